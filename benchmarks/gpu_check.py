"""Cold start and per-job overhead on a GPU machine, ComfyUI's side (benchmarks/gpu_check.sh runs it).

On the GPU machine only ComfyUI's own dependencies are carried in, not the
worker's (the RunPod SDK and its tree do not fit the carry limit), so this uses
the standard-library lean client and the standard-library prefetch:

1. cold start, 512x512, 20 steps on a generated SD1.5-size checkpoint: ComfyUI
   launched -> answering -> first result (model read + load + generation) ->
   second result (generation alone); with a cold page cache without and with the
   prefetch, and with a warm one; plus the checkpoint read alone from a cold cache;
2. per-job overhead of the lean client (wall - ComfyUI's execution) on the
   model-free workflow and on the 512x512 txt2img;
3. ComfyUI's boot phase by phase (benchmarks/boot.py), cold and warm page cache.

Writes a markdown section to the path given (benchmarks/GPU_RESULTS.md's form).

    python benchmarks/gpu_check.py --comfyui DIR --out FILE
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import boot  # noqa: E402
from benchmarks.lean_client import LeanClient, comfy_execution_s  # noqa: E402
from comfy_worker.models.prefetch import read_through  # noqa: E402
from tests.support.page_cache import drop_all_caches  # noqa: E402
from tests.support.workflows import empty_image, txt2img  # noqa: E402

CHECKPOINT = "sd15-size-random-fp16.safetensors"
SIZE, STEPS = int(os.environ.get("SIZE", 512)), int(os.environ.get("STEPS", 20))
EXTRA_ARGS = os.environ.get("COMFY_EXTRA_ARGS", "").split()  # e.g. --cpu, for a dry run without a GPU


def job(seed: int) -> dict:
    return txt2img(steps=STEPS, size=SIZE, seed=seed, checkpoint=CHECKPOINT)


def comfyui_command(comfyui: Path, port: int) -> list[str]:
    flags = (REPO_ROOT / "ComfyUI" / "launch.args").read_text()
    launch = [flag for line in flags.splitlines() for flag in line.split("#", 1)[0].split()]
    (comfyui / "empty-frontend").mkdir(exist_ok=True)
    return [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port), *launch,
            "--disable-api-nodes",
            "--front-end-root", str(comfyui / "empty-frontend"), *EXTRA_ARGS]  # fmt: skip


def start_comfyui(comfyui: Path, port: int, log_file: Path) -> subprocess.Popen:
    with open(log_file, "ab") as log:
        return subprocess.Popen(comfyui_command(comfyui, port), cwd=comfyui, stdout=log, stderr=subprocess.STDOUT)


def boot_breakdown(comfyui: Path) -> boot.BootResults:
    """ComfyUI's boot phase by phase (benchmarks/boot.py), cold and warm page cache."""
    launch = boot.Config("the worker's launch", True, ())

    def run(config: boot.Config) -> boot.BootRun:
        port = boot.free_port()
        return boot.timed_boot(comfyui_command(comfyui, port), port, {**os.environ, "PYTHONUNBUFFERED": "1"}, comfyui)

    return boot.alternate([launch], ["cold", "warm"], 2, run, "GPU")


def wait_answering(port: int, process: subprocess.Popen, log_file: Path, started: float) -> float:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=1):
                return time.monotonic() - started
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"ComfyUI exited:\n{log_file.read_text()[-4000:]}") from None
            time.sleep(0.02)


def cold_start(comfyui: Path, cache: str, prefetch: bool, port: int, log_file: Path) -> dict:
    if cache == "cold":
        drop_all_caches()
    started = time.monotonic()
    process = start_comfyui(comfyui, port, log_file)
    prefetcher = None
    if prefetch:  # as start.sh runs it
        pid_file = log_file.parent / "comfyui.pid"
        pid_file.write_text(str(process.pid))
        env = {
            **os.environ,
            "COMFYUI_PATH": str(comfyui),
            "PREFETCH_MODELS": CHECKPOINT,
            "COMFY_PID_FILE": str(pid_file),
        }
        priority = ["nice", "-n", "19", *(["ionice", "-c", "3"] if shutil.which("ionice") else [])]
        prefetcher = subprocess.Popen(
            [*priority, sys.executable, "-m", "comfy_worker.models.prefetch"], cwd=REPO_ROOT, env=env
        )
    try:
        answers = wait_answering(port, process, log_file, started)
        client = LeanClient(f"127.0.0.1:{port}")
        _, first = client.run(job(1))
        first_result = time.monotonic() - started
        _, second = client.run(job(2))
        return {
            "cache": cache,
            "prefetch": prefetch,
            "answers_s": answers,
            "first_result_s": first_result,
            "first_execution_s": comfy_execution_s(first),
            "generation_s": comfy_execution_s(second),
        }
    finally:
        process.terminate()
        process.wait(30)
        if prefetcher is not None:
            prefetcher.wait(60)


def overheads(comfyui: Path, port: int, log_file: Path, runs: int) -> dict[str, list[float]]:
    process = start_comfyui(comfyui, port, log_file)
    try:
        wait_answering(port, process, log_file, time.monotonic())
        client = LeanClient(f"127.0.0.1:{port}")
        client.run(job(3))  # loads the model
        txt2img_name = f"txt2img {SIZE}x{SIZE}, {STEPS} steps"
        found: dict[str, list[float]] = {"model-free (EmptyImage 8x8)": [], txt2img_name: []}
        for i in range(runs + 3):
            for name, workflow in (
                ("model-free (EmptyImage 8x8)", empty_image(color=i + 1)),
                (txt2img_name, job(100 + i)),
            ):
                started = time.perf_counter()
                _, history = client.run(workflow)
                wall = time.perf_counter() - started
                if i >= 3:
                    found[name].append((wall - comfy_execution_s(history)) * 1000)
        return found
    finally:
        process.terminate()
        process.wait(30)


def device() -> str:
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except FileNotFoundError:
        smi = "no GPU (a dry run)"
    import torch

    return f"{smi}; torch {torch.__version__}, CUDA {torch.version.cuda}; Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    args.comfyui = args.comfyui.resolve()
    log_file = args.out.parent / "comfyui.log"
    checkpoint = args.comfyui / "models" / "checkpoints" / CHECKPOINT
    drop_all_caches()
    started = time.monotonic()
    size = read_through(checkpoint, bytearray(8 * 1024 * 1024))
    read_s = time.monotonic() - started
    runs = [
        cold_start(args.comfyui, cache, prefetch, 8190 + i, log_file)
        for i, (cache, prefetch) in enumerate((("cold", False), ("cold", True), ("warm", False)))
    ]
    overhead = overheads(args.comfyui, 8199, log_file, args.runs)
    breakdown = boot.render(boot_breakdown(args.comfyui))
    rows = "\n".join(
        f"| {r['cache']} | {'yes' if r['prefetch'] else 'no'} | {r['answers_s']:.1f} | {r['first_result_s']:.1f} | "
        f"{r['first_execution_s']:.2f} | {r['generation_s']:.2f} | "
        f"{max(r['answers_s'], read_s) + r['generation_s']:.1f} |"
        for r in runs
    )
    overhead_rows = "\n".join(
        f"| {name} | {statistics.median(v):.2f} | {statistics.quantiles(v, n=10)[-1]:.2f} | {len(v)} |"
        for name, v in overhead.items()
    )
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.out.write_text(
        f"""## GPU (`benchmarks/gpu_check.sh`, {date})

Device: {device()}. ComfyUI with the worker's launch flags, the lean client
(the worker's own dependencies are not on that machine; nor are kornia and spandrel,
so three extra nodes this job does not use fail to import), a generated SD1.5-size
checkpoint ({size / 1e9:.2f} GB fp16), txt2img {SIZE}x{SIZE}, {STEPS} steps, euler. Read
alone from a cold page cache: {read_s:.2f} s ({size / 1e9 / read_s:.2f} GB/s).
Seconds from ComfyUI's launch; the first job's execution includes reading and
loading the model; "limit" is max(ComfyUI answering, the read alone) + generation.

| page cache | prefetch | ComfyUI answers | first result | first job's execution | generation | limit |
|---|---|---|---|---|---|---|
{rows}

Per-job overhead of the lean client (wall - ComfyUI's execution, ms):

| workflow | median | p90 | n |
|---|---|---|---|
{overhead_rows}

ComfyUI's boot, phase by phase (`benchmarks/boot.py`; seconds from the launch, phases from its log lines):

{breakdown}
"""
    )
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
