"""Cold start: start.sh launched -> ComfyUI answering -> worker ready -> the first job's result.

Each run launches start.sh as the image does (SDK local mode: it runs one job and
exits) on a ComfyUI tree of its own whose only checkpoint is a generated SD1.5-size
one (~2.3 GB fp16, scripts/dev/make_sd15_size_checkpoint.py), so reading the model
weighs as it does on RunPod. Runs cover a cold page cache (everything dropped
before the launch, as in a fresh container) and a warm one, with and without the
warm-up job (WARMUP_JOB) and with and without the prefetch (PREFETCH).

Before the runs, one untimed start saves ComfyUI's node list (NODES_SNAPSHOT), as the
image build does. Times come from the moment each line reaches the benchmark (start.sh's output,
unbuffered) and from polling ComfyUI every 5 ms; the job's own `timings` come
from its result. Separately: the checkpoint read alone from a cold cache (disk
bandwidth) and importing the SDK and the worker.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfy_worker.models.prefetch import read_through
from tests.support.comfyui_server import COMFYUI_DIR, PYTHON, free_port
from tests.support.page_cache import drop_all_caches
from tests.support.workflows import REPO_ROOT, empty_image, txt2img

BENCH_DIR = REPO_ROOT / ".local" / "bench"
CHECKPOINT = "sd15-size-random-fp16.safetensors"


@dataclass
class Run:
    cache: str  # "cold" or "warm"
    warmup: bool
    prefetch: bool
    comfy_answers_s: float
    worker_ready_s: float
    result_s: float
    execute_s: float  # the first job's ComfyUI execution, as the worker timed it
    job_total_s: float
    prefetch_line: str
    warmup_share_s: float = 0.0  # the warm-up's whole run: ComfyUI's work for that job, model load included

    @property
    def worker_adds_s(self) -> float:
        """From ComfyUI answering to the result, less the first job's ComfyUI execution
        (and less the warm-up's whole run, which is ComfyUI's work for that job)."""
        return self.result_s - self.comfy_answers_s - self.execute_s - self.warmup_share_s


def ensure_models() -> Path:
    models = BENCH_DIR / "models"
    if not (models / "checkpoints" / CHECKPOINT).exists():
        subprocess.run(
            [str(PYTHON), "scripts/dev/make_sd15_size_checkpoint.py", "--models-dir", str(models)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(COMFYUI_DIR)},
            check=True,
        )
    return models


def comfyui_tree(models: Path) -> Path:
    """The pinned ComfyUI's code, with the benchmark's models and empty job folders."""
    base = BENCH_DIR / "comfyui"
    if not base.exists():
        base.mkdir(parents=True)
        for item in COMFYUI_DIR.iterdir():
            if item.name not in {"models", "input", "output", "temp", "user", "custom_nodes"}:
                (base / item.name).symlink_to(item)
        (base / "custom_nodes").mkdir()
        (base / "models").symlink_to(models)
    return base


def the_job(seed: int) -> dict[str, Any]:
    return {"input": {"workflow": txt2img(steps=4, size=128, seed=seed, checkpoint=CHECKPOINT)}}


def watch_output(process: subprocess.Popen, started: float, lines: list[tuple[float, str]]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        lines.append((time.monotonic() - started, raw.decode(errors="replace").rstrip()))


def poll_until_answering(host: str, started: float, found: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://{host}/system_stats", timeout=1):
                found["comfy_answers_s"] = time.monotonic() - started
                return
        except OSError:
            time.sleep(0.005)


def first(lines: list[tuple[float, str]], marker: str) -> tuple[float, str]:
    return next(((at, line) for at, line in lines if marker in line), (float("nan"), ""))


def run_once(tree: Path, tmp: Path, cache: str, warmup: bool, prefetch: bool, seed: int) -> Run:
    host = f"127.0.0.1:{free_port()}"
    warmup_file = tmp / "warmup.json"
    warmup_file.write_text(json.dumps(the_job(seed + 1000)))
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "COMFYUI_PATH": str(tree),
        "COMFY_HOST": host,
        "COMFY_PID_FILE": str(tmp / "comfyui.pid"),
        "PYTHON": str(PYTHON),
        "COMFY_EXTRA_ARGS": f"--cpu --base-directory {tree}",
        "VOLUME_MODELS_DIR": str(tmp / "no-volume"),
        "MODEL_CACHE_DIR": str(tmp / "model-cache"),
        "PREFETCH": "auto" if prefetch else "off",
    }
    if warmup:
        env["WARMUP_JOB"] = str(warmup_file)
    else:
        env["PREFETCH_MODELS"] = CHECKPOINT  # what the warm-up would name; the job's own model
    if cache == "cold" and not drop_all_caches():
        raise SystemExit("dropping the page cache needs root (/proc/sys/vm/drop_caches)")
    lines: list[tuple[float, str]] = []
    found: dict[str, float] = {}
    stop = threading.Event()
    started = time.monotonic()
    process = subprocess.Popen(
        ["bash", str(REPO_ROOT / "start.sh"), "--test_input", json.dumps(the_job(seed))],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    reader = threading.Thread(target=watch_output, args=(process, started, lines))
    poller = threading.Thread(target=poll_until_answering, args=(host, started, found, stop))
    reader.start()
    poller.start()
    process.wait(timeout=900)
    stop.set()
    reader.join()
    poller.join()
    result_at, _ = first(lines, "completed successfully")
    _, timings_line = first(lines, "job local_test done, timings ")
    if process.returncode != 0 or not timings_line:
        tail = "\n".join(line for _, line in lines[-40:])
        raise RuntimeError(f"start.sh failed ({process.returncode}):\n{tail}")
    timings = json.loads(timings_line.split(" timings ", 1)[1])
    warmup_start, _ = first(lines, "warming up with")
    warmup_done, _ = first(lines, "warm-up done")
    return Run(
        cache=cache,
        warmup=warmup,
        prefetch=prefetch,
        comfy_answers_s=found.get("comfy_answers_s", float("nan")),
        worker_ready_s=first(lines, "worker ready")[0],
        result_s=result_at,
        execute_s=timings["execute_s"],
        job_total_s=timings["total_s"],
        prefetch_line=first(lines, "[prefetch] read")[1].split("] ", 1)[-1],
        warmup_share_s=(warmup_done - max(warmup_start, found.get("comfy_answers_s", 0.0))) if warmup else 0.0,
    )


def read_alone(models: Path) -> tuple[float, float]:
    """(seconds, GB) to read the checkpoint from a cold page cache: the disk's part."""
    path = models / "checkpoints" / CHECKPOINT
    drop_all_caches()
    started = time.monotonic()
    size = read_through(path, bytearray(8 * 1024 * 1024))
    return time.monotonic() - started, size / 1e9


def import_time(cold: bool) -> float:
    if cold:
        drop_all_caches()
    started = time.monotonic()
    subprocess.run(
        [str(PYTHON), "-c", "import runpod, comfy_worker.worker"], cwd=REPO_ROOT, check=True, capture_output=True
    )
    return time.monotonic() - started


@dataclass
class ColdStartResults:
    runs: list[Run]
    read_s: float
    read_gb: float
    import_cold_s: float
    import_warm_s: float

    def generation_s(self) -> float:
        """The job's ComfyUI execution with its model already loaded (after a warm-up)."""
        return statistics.median(run.execute_s for run in self.runs if run.warmup)

    def run(self, cache: str, warmup: bool, prefetch: bool) -> Run:
        return next(r for r in self.runs if (r.cache, r.warmup, r.prefetch) == (cache, warmup, prefetch))


def first_start(tree: Path, tmp: Path) -> None:
    """One untimed start with a model-free job: the worker saves ComfyUI's node list (its
    NODES_SNAPSHOT), as the image build does, so the timed runs start as a fresh container."""
    if (tree / "worker-object-info.json").exists():
        return
    env = {
        **os.environ,
        "COMFYUI_PATH": str(tree),
        "COMFY_HOST": f"127.0.0.1:{free_port()}",
        "COMFY_PID_FILE": str(tmp / "comfyui.pid"),
        "PYTHON": str(PYTHON),
        "COMFY_EXTRA_ARGS": f"--cpu --base-directory {tree}",
        "VOLUME_MODELS_DIR": str(tmp / "no-volume"),
        "MODEL_CACHE_DIR": str(tmp / "model-cache"),
        "PREFETCH": "off",
    }
    job = {"input": {"workflow": empty_image()}}
    command = ["bash", str(REPO_ROOT / "start.sh"), "--test_input", json.dumps(job)]
    subprocess.run(command, cwd=tmp, env=env, check=True, capture_output=True, timeout=600)


def measure(tmp: Path, quick: bool = False) -> ColdStartResults:
    models = ensure_models()
    tree = comfyui_tree(models)
    first_start(tree, tmp)
    runs = []
    # Cold runs first (each drops the page cache); each warm run finds what the run before it read.
    combos = list(itertools.product(("cold", "warm"), (False, True), (True, False)))
    if quick:  # what the targets need
        combos = [("cold", False, True), ("cold", False, False), ("warm", True, True)]
    for seed, (cache, warmup, prefetch) in enumerate(combos):
        print(f"cold start: {cache} cache, warm-up {warmup}, prefetch {prefetch}", file=sys.stderr)
        runs.append(run_once(tree, tmp, cache, warmup, prefetch, seed))
    read_s, read_gb = read_alone(models)
    return ColdStartResults(runs, read_s, read_gb, import_time(cold=True), import_time(cold=False))
