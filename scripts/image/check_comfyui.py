"""Prove a ComfyUI tree before an image ships: the worker can drive it, the named
workflows run on it, and the worker keeps its node list. Exits 1 naming what broke.

    python scripts/image/check_comfyui.py --comfyui /comfyui --workflows /worker/ComfyUI/workflows \\
        [--launch-args ComfyUI/launch.args] [--save-snapshot PATH] [--python PYTHON]

The image build runs it (Dockerfile, step 6) right after installing ComfyUI, its custom
nodes and its models, so a ComfyUI upgrade the worker cannot drive, or a workflow that
names a node or model the image lacks, fails the build instead of jobs on RunPod. It
starts the tree once on the CPU (a build has no GPU) with the worker's launch flags
(ComfyUI/launch.args, and --disable-api-nodes as start.sh adds it unless
COMFY_API_NODES is true) and a model folder of its own, then:
1. reads GET /object_info while that folder is empty: the named workflows are checked
   against it (check_workflows.py) and, with --save-snapshot, it is kept where the
   worker reads its node list at start (comfy_worker/comfyui/nodes_snapshot.py), so a fresh
   container's worker is ready the moment ComfyUI answers;
2. puts a generated checkpoint into the folder (scripts/dev/make_tiny_checkpoint.py,
   made while ComfyUI starts) and checks the worker's contract with this ComfyUI
   through the worker's own code (comfyui_contract.py): nodes learned, a job with
   progress and outputs, a cancel, history deleted, a UI-format workflow, no file left.
Nothing is left in the tree but what ComfyUI itself writes when it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # the worker's package and the scripts, wherever this runs from

from comfy_worker.comfyui import nodes_snapshot  # noqa: E402
from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME  # noqa: E402
from scripts.image.check_workflows import problems  # noqa: E402
from scripts.image.comfyui_contract import ContractBroken, check_contract  # noqa: E402

log = logging.getLogger("check_comfyui")
START_TIMEOUT_S = 300  # ComfyUI's start on a busy build machine; only a hang reaches it
MODEL_FOLDERS = ("checkpoints", "vae_approx", "loras")  # what the generated checkpoint brings


def launch_flags(launch_args: Path) -> list[str]:
    return shlex.split(launch_args.read_text(), comments=True)


@contextlib.contextmanager
def running_comfyui(comfyui: Path, python: str, launch_args: Path, models: Path) -> Iterator[tuple[str, Path]]:
    """ComfyUI on 127.0.0.1 (its URL, its PID file), reading `models` besides its own folders."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    paths = models / "extra_model_paths.yaml"
    paths.write_text(json.dumps({"contract": {"base_path": str(models), **{f: f"{f}/" for f in MODEL_FOLDERS}}}))
    command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)]
    command += ["--extra-model-paths-config", str(paths)]
    if os.environ.get("COMFY_API_NODES", "false").strip().lower() not in ("1", "true", "yes", "on"):
        command.append("--disable-api-nodes")
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as output:
        server = subprocess.Popen([*command, *launch_flags(launch_args)], cwd=comfyui, stdout=output, stderr=output)
        pid_file = models / "comfyui.pid"
        pid_file.write_text(str(server.pid))
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _answers(f"{url}/object_info"):
                if server.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    tail = output.read().decode(errors="replace")[-3000:]
                    raise SystemExit(f"ComfyUI did not start (exit code {server.poll()}); its log ends:\n{tail}")
                time.sleep(0.5)
            yield url, pid_file
        except BaseException:
            output.seek(0)
            log.error("ComfyUI's log ends:\n%s", output.read().decode(errors="replace")[-3000:])
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=30):
            return True
    except OSError:
        return False


def object_info_at(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/object_info", timeout=120) as answer:
        return json.load(answer)


def generate_checkpoint(comfyui: Path, python: str, target: Path) -> subprocess.Popen:
    """Start making the tiny checkpoint (random weights, ComfyUI's own classes) into `target`."""
    script = REPO_ROOT / "scripts" / "dev" / "make_tiny_checkpoint.py"
    env = {**os.environ, "PYTHONPATH": str(comfyui)}
    return subprocess.Popen(
        [python, str(script), "--comfyui-dir", str(comfyui), "--models-dir", str(target)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="the ComfyUI tree with its nodes and models")
    parser.add_argument("--workflows", type=Path, required=True, help="the named workflows to prove")
    parser.add_argument("--launch-args", type=Path, default=REPO_ROOT / "ComfyUI" / "launch.args")
    parser.add_argument("--save-snapshot", type=Path, help="write the node list here (the worker's NODES_SNAPSHOT)")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs ComfyUI (default: this one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[check_comfyui] %(message)s")
    comfyui = args.comfyui.resolve()
    with tempfile.TemporaryDirectory(prefix="check-comfyui-") as scratch:
        models, made = Path(scratch) / "models", Path(scratch) / "made"
        for folder in MODEL_FOLDERS:
            (models / folder).mkdir(parents=True)
        making = generate_checkpoint(comfyui, args.python, made)
        try:
            with running_comfyui(comfyui, args.python, args.launch_args, models) as (url, pid_file):
                object_info = object_info_at(url)
                found = problems(args.workflows, object_info)
                for problem in found:
                    log.error("%s", problem)
                if found:
                    return 1
                if making.wait(timeout=START_TIMEOUT_S) != 0:
                    output = making.stdout.read().decode(errors="replace")[-3000:] if making.stdout else ""
                    raise SystemExit(f"the generated checkpoint could not be made:\n{output}")
                for folder in MODEL_FOLDERS:
                    for file in (made / folder).iterdir():
                        shutil.move(file, models / folder / file.name)
                try:
                    summary = asyncio.run(check_contract(url, comfyui, pid_file, CHECKPOINT_NAME))
                except ContractBroken as broken:
                    log.error("the worker cannot drive this ComfyUI: %s", broken)
                    return 1
                log.info("%s", summary)
        finally:
            if making.poll() is None:
                making.kill()
            making.wait()
        if args.save_snapshot:
            nodes_snapshot.save(args.save_snapshot, comfyui, object_info)
            log.info("saved the node list (%d node types) to %s", len(object_info), args.save_snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
