"""Tools some tests need beyond Python (scripts/dev/setup_test_tools.sh installs them)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def missing(what: str) -> None:
    """Skip on a developer's machine without the tool; in CI (CI set) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: scripts/dev/setup_test_tools.sh installs it")
    pytest.skip(f"{what} is missing: run scripts/dev/setup_test_tools.sh")


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}
"""Lets tests commit in repositories of their own where git has no user set."""


@contextmanager
def full_disk(folder: Path, size: str = "64k") -> Iterator[Path]:
    """A small tmpfs mounted on `folder` (made if missing) and filled up, so every write there
    fails with ENOSPC; unmounted and removed after. Skips where mounting is not allowed
    (it needs root)."""
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        if made:
            folder.rmdir()
        pytest.skip(f"a small disk cannot be mounted here: {mounted.stderr.decode().strip()}")
    try:
        with open(folder / ".filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
        if made:
            folder.rmdir()
