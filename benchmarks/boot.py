"""ComfyUI's boot, phase by phase: a plain `main.py --cpu` against the worker's launch,
each of the worker's cuts added one at a time, warm and cold page cache.

Each run starts ComfyUI alone (no worker) on a copy of the pinned ComfyUI's code
under .local/bench/boot/ with the worker's own custom node, and times each line of its
log as it arrives (unbuffered) plus the moment it first answers HTTP (polled every
5 ms). The phases come from ComfyUI's own log lines (`PHASES`). Runs alternate
between the configurations, so a busy moment of the machine spreads over all of them.

The cuts (README, "What the worker cuts from ComfyUI's boot"):
- bytecode: the image compiles every module at build time (Dockerfile step 7); here
  one copy of the code is compiled and the plain copy never is (the runs do not write
  bytecode), as in a fresh container of an image built without the step.
- API nodes off (`--disable-api-nodes`, start.sh unless COMFY_API_NODES=true), with
  the rest of ComfyUI/launch.args (the worker's launch).

`measure_image` times a fresh container of the built image as RunPod starts it (start.sh,
the worker, a first job) against a plain `main.py --cpu` in the same image, cold and warm
(tests/container/image_build.py prints it, with the two ratios the boot is judged on).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.comfyui_server import COMFYUI_DIR, LAUNCH_FLAGS, PYTHON, WORKER_NODES
from tests.support.page_cache import drop_all_caches
from tests.support.workflows import REPO_ROOT

BENCH_DIR = REPO_ROOT / ".local" / "bench" / "boot"
NOT_CODE = {"models", "input", "output", "temp", "user", "custom_nodes", "tests", "tests-unit", ".git"}

# (phase, the log line that ends it); a phase's time runs from the line before.
PHASES: list[tuple[str, str]] = [
    ("interpreter and torch import", r"Checkpoint files will always be loaded safely|old pytorch version"),
    ("device initialisation", r"^Device: "),
    ("ComfyUI's own imports (nodes, comfy.sd, torchvision)", r"^Python version: "),
    ("server and frontend", r"\[Prompt Server\] web root"),
    ("built-in and API nodes", r"^Import times for custom nodes:"),
    ("database and routes", r"^Starting server"),
]
START_SH_PHASE = ("start.sh, before ComfyUI starts", r"\[start\.sh\] ComfyUI starting")
FIRST_RESULT = r"job \S+ done, timings"  # the worker's line as a job's result is in hand
CUSTOM_NODE_TIME = re.compile(r"^\s*([0-9.]+) seconds(?: \(IMPORT FAILED\))?: ")


@dataclass(frozen=True)
class Config:
    name: str
    compiled: bool
    flags: tuple[str, ...]


PLAIN_FLAGS: tuple[str, ...] = ()
CONFIGS = [
    Config("plain `main.py --cpu`", False, PLAIN_FLAGS),
    Config("+ bytecode compiled at build", True, PLAIN_FLAGS),
    Config("+ API nodes off (the worker's launch)", True, (*LAUNCH_FLAGS, "--disable-api-nodes")),
]


@dataclass
class BootRun:
    answers_s: float
    phases: dict[str, float] = field(default_factory=dict)
    first_result_s: float | None = None  # a job's result, where the run has one


def phases_of(
    lines: Sequence[tuple[float, str]], answers_s: float, phases: Sequence[tuple[str, str]] = PHASES
) -> dict[str, float]:
    """Seconds per phase from (arrival time, line) pairs; the custom nodes' own import
    times (ComfyUI lists them) are split out of the node loading. A phase whose line
    never came (start.sh's, in a plain boot) takes no time."""
    found: dict[str, float] = {}
    previous = 0.0
    for phase, marker in phases:
        at = next((t for t, line in lines if re.search(marker, line)), None)
        if at is None:
            found[phase] = float("nan") if phase != START_SH_PHASE[0] else 0.0
            continue
        found[phase] = at - previous
        previous = at
    custom = sum(float(match.group(1)) for _, line in lines if (match := CUSTOM_NODE_TIME.match(line)))
    if "built-in and API nodes" in found:
        found["built-in and API nodes"] -= custom
    found["custom nodes"] = custom
    found["listening"] = answers_s - previous
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_boot(
    command: list[str],
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    first_result: str | None = None,
    phases: Sequence[tuple[str, str]] = PHASES,
) -> BootRun:
    """Start `command` (a ComfyUI listening on `port`), time its log and its first answer
    (and the log line `first_result` matches, if given), stop it."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append((time.monotonic() - started, raw.decode(errors="replace").strip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            if process.poll() is not None:
                tail = "\n".join(line for _, line in lines[-30:])
                raise RuntimeError(f"ComfyUI exited ({process.returncode}) before answering:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=1):
                    break
            except OSError:
                time.sleep(0.005)
        answers_s = time.monotonic() - started
        result_s = None
        while first_result is not None and result_s is None:
            result_s = next((t for t, line in list(lines) if re.search(first_result, line)), None)
            if result_s is None and process.poll() is not None:
                tail = "\n".join(line for _, line in lines[-30:])
                raise RuntimeError(f"the job gave no result ({process.returncode}):\n{tail}")
            time.sleep(0.005)
        time.sleep(0.05)  # the last log lines
        return BootRun(answers_s, phases_of(list(lines), answers_s, phases), result_s)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)


def code_copy(compiled: bool) -> Path:
    """A copy of the pinned ComfyUI's code (no models, no job folders), compiled or not."""
    tree = BENCH_DIR / ("compiled" if compiled else "plain")
    version = (COMFYUI_DIR / "comfyui_version.py").read_text()
    if not (tree / "comfyui_version.py").exists() or (tree / "comfyui_version.py").read_text() != version:
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(COMFYUI_DIR, tree, ignore=lambda folder, names: NOT_CODE if folder == str(COMFYUI_DIR) else ())
        for cache in tree.rglob("__pycache__"):
            shutil.rmtree(cache)
        custom_nodes = tree / "custom_nodes"
        custom_nodes.mkdir()
        shutil.copytree(WORKER_NODES / "worker_save_image", custom_nodes / "worker_save_image")
        if compiled:
            subprocess.run([str(PYTHON), "-m", "compileall", "-q", "-j", "0", str(tree)], check=True)
    return tree


def local_run(config: Config) -> BootRun:
    tree = code_copy(config.compiled)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="boot-") as base:
        (Path(base) / "custom_nodes").symlink_to(tree / "custom_nodes")
        command = [str(PYTHON), "main.py", "--cpu", "--port", str(port), "--base-directory", base, *config.flags]
        # No bytecode written: the plain copy stays as a fresh checkout has it.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        return timed_boot(command, port, env, cwd=tree)


@dataclass
class BootResults:
    where: str
    runs: dict[tuple[str, str], list[BootRun]]  # (cache, config name) -> runs

    def median(self, cache: str, config: str) -> float:
        return statistics.median(run.answers_s for run in self.runs[(cache, config)])

    def phase_medians(self, cache: str, config: str) -> dict[str, float]:
        runs = self.runs[(cache, config)]
        return {phase: statistics.median(run.phases[phase] for run in runs) for phase in runs[0].phases}


def alternate(
    configs: Sequence[Config], caches: Sequence[str], runs: int, boot: Callable[[Config], BootRun], where: str
) -> BootResults:
    results = BootResults(where, {})
    for cache in caches:
        for _ in range(runs):
            for config in configs:
                if cache == "cold" and not drop_all_caches():
                    raise SystemExit("dropping the page cache needs root (/proc/sys/vm/drop_caches)")
                results.runs.setdefault((cache, config.name), []).append(boot(config))
    return results


def measure(quick: bool = False) -> BootResults:
    """On this machine: every configuration warm, the first and last also cold."""
    for compiled in (False, True):
        code_copy(compiled)
    warm = alternate(CONFIGS, ["warm"], 3 if quick else 5, local_run, "this machine")
    cold = alternate([CONFIGS[0], CONFIGS[-1]], ["cold"], 2 if quick else 3, local_run, "this machine")
    warm.runs.update(cold.runs)
    return warm


# In the built image: a fresh container's first start as RunPod makes it (start.sh, the
# worker and a first job) against a plain `main.py --cpu` in the same image.
IMAGE_PLAIN = Config("plain `main.py --cpu`", True, ())
IMAGE_START_SH = Config("start.sh (the worker's launch, a first job)", True, ())
IMAGE_CONFIGS = [IMAGE_PLAIN, IMAGE_START_SH]


def image_run(image: str, job: dict) -> Callable[[Config], BootRun]:
    """A boot in a fresh container of `image`: plain, or through start.sh running `job`."""

    def run(config: Config) -> BootRun:
        port = free_port()
        name = f"comfy-boot-{os.getpid()}-{port}"
        docker_run = ["docker", "run", "--rm", "--name", name, "--network", "host", "-e", "PYTHONUNBUFFERED=1"]
        if config is IMAGE_PLAIN:
            command = [*docker_run, image, "bash", "-c", f"cd /comfyui && exec python main.py --cpu --port {port}"]
            first_result = None
        else:
            env = ["-e", "COMFY_EXTRA_ARGS=--cpu", "-e", f"COMFY_HOST=127.0.0.1:{port}"]
            command = [*docker_run, *env, image, "/worker/start.sh", "--test_input", json.dumps(job)]
            first_result = FIRST_RESULT
        try:
            return timed_boot(command, port, first_result=first_result, phases=[START_SH_PHASE, *PHASES])
        finally:
            # Stopping `docker run` leaves its container running (ComfyUI is its PID 1, which
            # ignores SIGTERM): remove it, or each measured boot keeps a ComfyUI.
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)

    return run


def measure_image(image: str, job: dict, runs: int = 3) -> BootResults:
    """Cold runs only where the page cache can be dropped (root)."""
    caches = ["cold", "warm"] if drop_all_caches() else ["warm"]
    return alternate(IMAGE_CONFIGS, caches, runs, image_run(image, job), "fresh containers of the image")


def image_ratios(results: BootResults, cache: str) -> tuple[float, float]:
    """(ComfyUI answering through start.sh, the first job's result through start.sh), each
    over a plain `main.py --cpu`'s answer, medians."""
    plain = results.median(cache, IMAGE_PLAIN.name)
    first = statistics.median(run.first_result_s or math.nan for run in results.runs[(cache, IMAGE_START_SH.name)])
    return results.median(cache, IMAGE_START_SH.name) / plain, first / plain


def image_section(results: BootResults) -> str:
    caches = [cache for cache in ("cold", "warm") if (cache, IMAGE_PLAIN.name) in results.runs]
    ratios = []
    for cache in caches:
        answers, first = image_ratios(results, cache)
        ratios.append(f"{cache} cache: ComfyUI answers in {answers:.2f}x, the first result comes in {first:.2f}x")
    return (
        "A fresh container's first start (CPU; seconds from `docker run`; medians): start.sh with the worker and a "
        "first job (`--test_input`, tiny txt2img) against a plain `main.py --cpu` in the same image, each time "
        "over the plain boot's answer (goals: 0.70x and 0.80x).\n"
        + "\n".join(f"- {line}" for line in ratios)
        + "\n\n"
        + render(results)
    )


def render(results: BootResults) -> str:
    """A table: one column per (cache, configuration), one row per phase, then the total."""
    columns = list(results.runs)
    phases = list(results.runs[columns[0]][0].phases)
    head = "| phase (s, median) | " + " | ".join(f"{config} ({cache})" for cache, config in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for phase in phases:
        cells = [f"{results.phase_medians(cache, config)[phase]:.2f}" for cache, config in columns]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    totals = [f"**{results.median(cache, config):.2f}**" for cache, config in columns]
    lines.append("| **ComfyUI answers** | " + " | ".join(totals) + " |")
    if any(run.first_result_s is not None for runs in results.runs.values() for run in runs):
        cells = []
        for column in columns:
            results_s = [run.first_result_s for run in results.runs[column] if run.first_result_s is not None]
            cells.append(f"**{statistics.median(results_s):.2f}**" if results_s else "-")
        lines.append("| **first job's result** | " + " | ".join(cells) + " |")
    counts = [str(len(results.runs[column])) for column in columns]
    lines.append("| runs | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def sooner(results: BootResults, cache: str, plain: str, cut: str) -> float:
    """How much sooner (fraction) `cut` answers than `plain`, medians."""
    return 1 - results.median(cache, cut) / results.median(cache, plain)
