"""What node packs on a network volume cost a worker's start: start.sh with none, with the
tests' four packs on a fresh volume (the first start: the pinned pack fetched, its
requirement installed into the layer), and on that volume again (a later start: both found).

    .local/venv/bin/python -m benchmarks.volume_packs [--quick]

Each run is start.sh with `--test_input` (a model-free job) on the pinned ComfyUI (CPU) and
a folder standing in for the volume (tests/support/volume_packs.py; pip sees only
.local/test-wheels, so no index's latency is in it). It times, from the launch: start.sh's
work before ComfyUI starts (the boot step is all of the difference), ComfyUI's first
answer, and the job's result. Runs alternate between the three; each configuration's node
snapshot is kept between its runs, as a worker's is, after one run that is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.volume_packs import WHEELS, stand_in_volume, start_sh_env
from tests.support.workflows import REPO_ROOT, empty_image

from .boot import FIRST_RESULT, START_SH_PHASE, BootRun, timed_boot
from .report import table

CONFIGS = ["no volume", "4 volume packs, first start", "4 volume packs, later start"]


@dataclass
class VolumeBoot:
    runs: dict[str, list[BootRun]]

    def median(self, config: str, what: Callable[[BootRun], float | None]) -> float:
        return statistics.median(value for run in self.runs[config] if (value := what(run)) is not None)


def start(work: Path, volume: Path, config: str, run: int) -> BootRun:
    snapshot = work / f"snapshot-{CONFIGS.index(config)}.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **start_sh_env(work, volume, str(run), snapshot)}
    base, port = Path(env["COMFYUI_PATH"]), int(env["COMFY_HOST"].rsplit(":", 1)[1])
    job = json.dumps({"input": {"workflow": empty_image(size=8)}})
    command = ["bash", str(REPO_ROOT / "start.sh"), "--test_input", job]
    try:
        return timed_boot(command, port, env, cwd=work, first_result=FIRST_RESULT, phases=[START_SH_PHASE])
    finally:
        shutil.rmtree(base, ignore_errors=True)


def measure(quick: bool = False) -> VolumeBoot:
    runs: dict[str, list[BootRun]] = {config: [] for config in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="volume-packs-") as tmp:
        work = Path(tmp)
        kept, _ = stand_in_volume(work / "kept")  # the later starts' volume
        counter = iter(range(10_000))
        for config, volume in (("no volume", work / "none"), (CONFIGS[2], kept)):
            start(work, volume, config, next(counter))  # not counted: the snapshot, the layer, the fetch
        for _ in range(2 if quick else 4):
            fresh, _ = stand_in_volume(work / f"fresh-{next(counter)}")
            for config, volume in zip(CONFIGS, (work / "none", fresh, kept), strict=True):
                print(f"  {config}", file=sys.stderr)
                runs[config].append(start(work, volume, config, next(counter)))
    return VolumeBoot(runs)


def render(results: VolumeBoot) -> str:
    rows = []
    for config in CONFIGS:
        before = results.median(config, lambda run: run.phases[START_SH_PHASE[0]])
        answers = results.median(config, lambda run: run.answers_s)
        result = results.median(config, lambda run: run.first_result_s)
        rows.append([config, f"{before:.2f}", f"{answers:.2f}", f"{result:.2f}", len(results.runs[config])])
    header = ["start", "start.sh before ComfyUI starts (s)", "ComfyUI answers (s)", "first result (s)", "runs"]
    return table(header, rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.volume_packs", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs of each instead of 4")
    args = parser.parse_args()
    if not (WHEELS / "inflection-0.5.1-py2.py3-none-any.whl").exists():
        print("run scripts/dev/fetch_test_wheels.sh first", file=sys.stderr)
        return 1
    print(render(measure(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
