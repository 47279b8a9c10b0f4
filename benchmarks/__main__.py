"""Run every benchmark and write the results table.

    .local/venv/bin/python -m benchmarks            # everything (~15 min on 2 CPU cores)
    .local/venv/bin/python -m benchmarks --quick    # fewer runs, to try a change

Writes benchmarks/RESULTS.md (date, machine, versions, the exact command, each
benchmark's table, the targets met or missed and by how much) and copies it into
docs/development.md between its `benchmarks:begin` / `benchmarks:end` markers (headings
one level down), so no number there is typed by hand. It writes only from a clean
commit: the table names the commit its numbers belong to. Needs the local runtime (scripts/dev/setup_local.sh) and,
for the cold-start runs, root (they drop the page cache). See each module's
docstring for what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from . import (
    boot,
    cold_start,
    encoding,
    job_loop,
    job_overhead,
    memory,
    progress_overhead,
    queue_throughput,
    save_image,
)
from .report import Report, render

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "RESULTS.md"
DOC = REPO_ROOT / "docs" / "development.md"
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def environment(command: str) -> dict[str, str]:
    import runpod
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    lock = dict(
        line.split("=", 1) for line in (REPO_ROOT / "ComfyUI" / "comfyui.lock").read_text().split() if "=" in line
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GB RAM, no GPU (ComfyUI on CPU)",
        "versions": (
            f"Python {platform.python_version()}, torch {torch.__version__}, ComfyUI {lock.get('COMFYUI_VERSION', '?')}"
            f", runpod {runpod.__version__}"
        ),
        "commit": (commit.stdout.strip() or "?") + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
        "command": command,
    }


async def run_with_comfyui(args: argparse.Namespace, report: Report, tmp: Path) -> None:
    from tests.support.comfyui_server import start_comfyui

    server = start_comfyui(tmp / "comfyui")
    try:
        # Memory first, while ComfyUI holds nothing but what the worker leaves (the lean
        # client of the overhead benchmark keeps its history and files, as bare clients do).
        print(f"memory over {args.memory_jobs} jobs", file=sys.stderr)
        report.memory = await memory.measure(server, args.memory_jobs)
        print("per-job overhead", file=sys.stderr)
        report.overheads = await job_overhead.measure(server, args.overhead_runs)
        print("job loop through the SDK and the local endpoint", file=sys.stderr)
        report.loop = job_loop.measure(server, args.loop_runs, tmp / "endpoint.log")
        print("a queue of jobs, JOBS_IN_FLIGHT = 1, 2, 3", file=sys.stderr)
        report.throughput = queue_throughput.measure(server, args.queue_jobs, args.loop_runs, tmp)
        print("saving PNGs: SaveImage and WorkerSaveImage", file=sys.stderr)
        report.saving = save_image.measure(server, args.save_runs)
    finally:
        server.stop()
    print("progress relay", file=sys.stderr)
    report.progress = await progress_overhead.measure(args.progress_steps, None)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs of each")
    parser.add_argument(
        "--skip-cold-start", action="store_true", help="no start.sh runs and no boot breakdown (they need root)"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; leave RESULTS.md and docs/development.md alone"
    )
    args = parser.parse_args()
    args.overhead_runs, args.loop_runs, args.memory_jobs = (30, 10, 60) if args.quick else (100, 30, 200)
    args.progress_steps = 100 if args.quick else 200
    args.queue_jobs = 20 if args.quick else 50
    args.save_runs = 5 if args.quick else 15
    command = "python -m benchmarks" + "".join(
        f" --{name.replace('_', '-')}" for name in ("quick", "skip_cold_start") if getattr(args, name)
    )
    report = Report(environment(command))
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp:
        asyncio.run(run_with_comfyui(args, report, Path(tmp)))
        print("result encoding", file=sys.stderr)
        report.encodings = encoding.measure()
        if not args.skip_cold_start:
            report.cold_start = cold_start.measure(Path(tmp), quick=args.quick)
            print("ComfyUI's boot, phase by phase", file=sys.stderr)
            report.boot = boot.measure(quick=args.quick)
    table = render(report, args.memory_jobs)
    print(table)
    if args.no_write:
        return 0
    if "uncommitted" in report.environment["commit"]:
        print("not written: the tree has uncommitted changes (numbers come only from a clean commit)", file=sys.stderr)
        return 1
    RESULTS.write_text(table)
    write_section(DOC, table)
    print(
        f"wrote {RESULTS.relative_to(REPO_ROOT)} and {DOC.relative_to(REPO_ROOT)}'s benchmark section", file=sys.stderr
    )
    return 0


def write_section(doc: Path, table: str) -> None:
    """The table between the doc's markers, its headings one level down (it sits under
    the doc's own "## Benchmarks")."""
    body = re.sub(r"^(#+) ", lambda match: f"#{match.group(1)} ", table.split("\n", 1)[1].strip(), flags=re.M)
    before, rest = doc.read_text().split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    doc.write_text(f"{before}{BEGIN}\n{body}\n{END}{after}")


if __name__ == "__main__":
    sys.exit(main())
