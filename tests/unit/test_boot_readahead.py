"""comfy_worker/models/boot_readahead.py: the files a boot opens are recorded in its order, read
ahead on a cold page cache, and left alone on a warm one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from comfy_worker.models import boot_readahead
from comfy_worker.models.prefetch import cached_fraction
from tests.support.page_cache import evict
from tests.support.workflows import REPO_ROOT

HANG_S = 60

STAND_IN_MAIN = """
import argparse, json, sys
import helper
parser = argparse.ArgumentParser()
parser.add_argument("--quick-test-for-ci", action="store_true")
parser.add_argument("--user-directory")
parser.add_argument("--temp-directory")
parser.add_argument("--database-url")
args, rest = parser.parse_known_args()
with open("data/settings.json") as file:
    json.load(file)
with open(args.user_directory + "/written-by-the-boot.db", "w") as file:
    file.write("x")
if args.quick_test_for_ci:
    exit(0)
raise SystemExit("the boot must end at --quick-test-for-ci")
"""


def stand_in_comfyui(root: Path) -> Path:
    """A tree shaped like ComfyUI's as far as the recording goes: main.py imports a module,
    reads a data file, writes to its user folder and ends at --quick-test-for-ci."""
    (root / "data").mkdir(parents=True)
    (root / "main.py").write_text(STAND_IN_MAIN)
    (root / "helper.py").write_text("VALUE = 1\n")
    (root / "data" / "settings.json").write_text("{}")
    return root


def test_a_boot_is_recorded_libraries_first_then_each_file_it_opened(tmp_path):
    tree = stand_in_comfyui(tmp_path / "comfyui")
    listing = tmp_path / "boot-files.txt"
    subprocess.run(
        [sys.executable, "-m", "comfy_worker.models.boot_readahead", "record", "--comfyui", str(tree),
         "--out", str(listing), "--", "--cpu", "--disable-api-nodes"],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=HANG_S,
    )  # fmt: skip
    files = listing.read_text().splitlines()
    helper = next(i for i, path in enumerate(files) if path.startswith(str(tree / "helper")))
    data = files.index(str(tree / "data" / "settings.json"))
    libraries = [i for i, path in enumerate(files) if ".so" in Path(path).name]
    assert libraries, "the interpreter's shared libraries are listed"
    assert max(libraries) < helper < data, "libraries first, then the files in the order the boot opened them"
    assert not any("written-by-the-boot" in path for path in files), "what the boot wrote is not listed"
    assert not any(path.startswith(str(tree / "main.py")) and path != str(tree / "main.py") for path in files)
    assert all(Path(path).is_file() for path in files)


def test_a_cold_page_cache_gets_the_files_read_ahead_the_big_ones_left_out(tmp_path):
    small = [tmp_path / f"module{i}.pyc" for i in range(4)]
    for path in small:
        path.write_bytes(os.urandom(256 * 1024))
    big = tmp_path / "libhuge.so"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    for path in [*small, big]:
        evict(path)
    assert cached_fraction(small[0]) < 0.5, "evicted"

    listed = [str(path) for path in [*small, big]] + [str(tmp_path / "gone-since-the-build.pyc")]
    files, size = boot_readahead.replay(listed, max_file_bytes=1024 * 1024)

    assert (files, size) == (4, 4 * 256 * 1024)
    deadline = time.monotonic() + HANG_S  # the kernel reads them in the background
    while not all(cached_fraction(path) > 0.95 for path in small):
        assert time.monotonic() < deadline, [cached_fraction(path) for path in small]
        time.sleep(0.01)
    assert cached_fraction(big) < 0.5, "a file over the limit is not read"


def test_a_warm_page_cache_is_left_alone(tmp_path):
    paths = [tmp_path / f"module{i}.pyc" for i in range(40)]
    for path in paths:
        path.write_bytes(os.urandom(8192))
        path.read_bytes()
    asked: list[int] = []
    assert boot_readahead.replay([str(path) for path in paths], advise=lambda fd, size: asked.append(size)) == (0, 0)
    assert asked == [], "nothing asked of the kernel"


def test_it_is_off_when_told_and_says_so_without_a_list(tmp_path, capsys):
    listing = tmp_path / "boot-files.txt"
    assert boot_readahead.main(["replay", str(listing)], env={}) == 0
    assert "no list of ComfyUI's boot files" in capsys.readouterr().err
    listing.write_text(str(tmp_path / "x.pyc") + "\n")
    assert boot_readahead.main(["replay", str(listing)], env={"BOOT_READAHEAD": "off"}) == 0
    assert capsys.readouterr().err == ""
