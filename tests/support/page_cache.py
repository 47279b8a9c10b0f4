"""The page cache, for tests and benchmarks that need a file read from disk again."""

from __future__ import annotations

import os
from pathlib import Path


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (pages mapped by a process stay)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def drop_all_caches() -> bool:
    """Drop the whole page cache (as root: /proc/sys/vm/drop_caches); False when not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False
