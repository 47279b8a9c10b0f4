"""Read ahead the files ComfyUI's boot opens, so a cold container's boot finds them in memory.

    python -m comfy_worker.models.boot_readahead record --comfyui /comfyui --out LIST [--launch-args FILE] [-- FLAGS]
    python -m comfy_worker.models.boot_readahead replay LIST      (start.sh, just before ComfyUI starts)

A fresh container on a host that has not run the image reads ComfyUI's code and
libraries from disk one import at a time: some 7,000 files, a few seconds of waiting
on a boot of ~10. `record` (a build step, Dockerfile) boots ComfyUI once with the
worker's launch flags (to `--quick-test-for-ci`, which ends the boot before it listens)
and writes the files it opened, in order: the shared libraries it mapped (torch's and
CUDA's, loaded first), then every module, bytecode and data file, from Python's audit
events. `replay` asks the kernel to read them ahead (`posix_fadvise(WILLNEED)`, from a
few threads, in the boot's order): the reads run beside ComfyUI's own, which then find
the pages in memory.

It never slows a warm start: it first looks whether a sample of the files is already in
the page cache (`mincore`) and stops at once if so. Files larger than
BOOT_READAHEAD_MAX_FILE_MB (64) are left out: the boot touches a small part of the big
CUDA libraries, and reading all of them would cost more than it saves.
BOOT_READAHEAD=off turns it off. Standard library only: it starts before anything heavy.
"""

from __future__ import annotations

import argparse
import logging
import os
import runpy
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .prefetch import cached_fraction

log = logging.getLogger("boot_readahead")

MAX_FILE_BYTES = 64 * 1024 * 1024
THREADS = 8
SAMPLE_FILES = 24  # looked at to tell a warm page cache from a cold one
WARM_SHARE = 0.9  # of the sample's pages cached: the boot's files are already in memory

Advise = Callable[[int, int], None]
"""(file descriptor, size): ask the kernel to read the file ahead."""


def record(comfyui: Path, flags: Sequence[str], out: Path) -> int:
    """Boot ComfyUI in this process up to `--quick-test-for-ci` and write the files it opened."""
    opened: dict[str, None] = {}

    def on_event(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], str):
            opened.setdefault(os.path.abspath(args[0]), None)  # a relative one, from where it was opened

    comfyui = comfyui.resolve()
    sys.addaudithook(on_event)  # from here on, every file this process opens is seen
    os.chdir(comfyui)
    sys.path.insert(0, str(comfyui))
    scratch = tempfile.mkdtemp(prefix="boot-record-")  # what the boot writes stays out of the image
    sys.argv = ["main.py", *flags, *_scratch_flags(scratch), "--quick-test-for-ci"]
    try:
        runpy.run_path("main.py", run_name="__main__")
    except SystemExit as done:
        if done.code not in (None, 0):
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = [path for path in dict.fromkeys([*mapped_files(), *opened]) if os.path.isfile(path)]
    out.write_text("".join(f"{path}\n" for path in files if not path.startswith(scratch)))
    return len(files)


def _scratch_flags(scratch: str) -> list[str]:
    """Where the recording boot writes: its user folder, temp folder and database (in memory)."""
    return ["--user-directory", scratch, "--temp-directory", scratch, "--database-url", "sqlite:///:memory:"]


def mapped_files() -> list[str]:
    """The files this process has mapped (its shared libraries), in the order of the map."""
    found: dict[str, None] = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            found.setdefault(parts[5], None)
    return list(found)


def fadvise_willneed(fd: int, size: int) -> None:
    os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)


def replay(
    listed: Sequence[str], max_file_bytes: int = MAX_FILE_BYTES, advise: Advise = fadvise_willneed
) -> tuple[int, int]:
    """Ask for each listed file to be read ahead, in order; (files, bytes) asked for, or
    (0, 0) when the page cache already holds them."""
    if is_warm(listed, max_file_bytes):
        return 0, 0

    def ahead(path: str) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return 0  # gone since the build (a volume's file, say): nothing to read
        try:
            size = os.fstat(fd).st_size
            if size > max_file_bytes:
                return 0
            advise(fd, size)
            return size
        finally:
            os.close(fd)

    with ThreadPoolExecutor(THREADS, thread_name_prefix="readahead") as pool:
        sizes = [size for size in pool.map(ahead, listed) if size]
    return len(sizes), sum(sizes)


def is_warm(listed: Sequence[str], max_file_bytes: int) -> bool:
    """Whether a sample of the files, spread over the list, is (nearly) all in the page cache."""
    candidates = [path for path in listed if 0 < _size(path) <= max_file_bytes]
    if not candidates:
        return True
    step = max(1, len(candidates) // SAMPLE_FILES)
    sample = candidates[::step][:SAMPLE_FILES]
    shares = []
    for path in sample:
        try:
            shares.append(cached_fraction(Path(path)))
        except (OSError, ValueError):
            continue
    return bool(shares) and sum(shares) / len(shares) >= WARM_SHARE


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    logging.basicConfig(level=logging.INFO, format="[boot_readahead] %(message)s", force=True)
    parser = argparse.ArgumentParser(prog="python -m comfy_worker.models.boot_readahead")
    commands = parser.add_subparsers(dest="command", required=True)
    recorder = commands.add_parser("record", help="boot ComfyUI once and write the files it opens")
    recorder.add_argument("--comfyui", type=Path, required=True)
    recorder.add_argument("--out", type=Path, required=True)
    recorder.add_argument("--launch-args", type=Path, help="a file of launch flags, as ComfyUI/launch.args")
    recorder.add_argument("flags", nargs="*", help="more launch flags (after --)")
    player = commands.add_parser("replay", help="read ahead the files a recorded boot opened")
    player.add_argument("listing", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        from_file = shlex.split(args.launch_args.read_text(), comments=True) if args.launch_args else []
        count = record(args.comfyui, [*from_file, *args.flags], args.out.resolve())
        log.info("ComfyUI's boot opened %d files: %s", count, args.out)
        return 0
    if env.get("BOOT_READAHEAD", "auto").lower() in {"off", "false", "0", "no"}:
        return 0
    if not args.listing.is_file():
        log.info("no list of ComfyUI's boot files at %s: nothing to read ahead", args.listing)
        return 0
    started = time.monotonic()
    max_bytes = int(float(env.get("BOOT_READAHEAD_MAX_FILE_MB", "64")) * 1024 * 1024)
    files, size = replay(args.listing.read_text().splitlines(), max_bytes)
    if files:
        log.info("asked for %d files, %.2f GB, in %.2f s", files, size / 1e9, time.monotonic() - started)
    else:
        log.info("ComfyUI's boot files are already in memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
