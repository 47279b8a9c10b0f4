"""Prove the named workflows before an image ships: every one loads (its parameter map
fits its graph), its node types exist in this ComfyUI, and every model file it names
is installed. Exits 1 naming each workflow and what is wrong.

    python scripts/image/check_workflows.py --comfyui /comfyui --workflows /worker/ComfyUI/workflows

It starts the ComfyUI tree on the CPU (an image build has no GPU) with the worker's
launch flags (ComfyUI/launch.args, and --disable-api-nodes as start.sh adds it unless
COMFY_API_NODES is true), reads GET /object_info, and stops it. With --save-snapshot it
keeps that node list where the worker reads it at start (comfy_worker/nodes_snapshot.py),
so a fresh container's worker is ready the moment ComfyUI answers. A list
input that an image, video or audio parameter fills (img2img's image) is the job's
to give, so it is not checked; every other value is, parameters' defaults included.
A model that only the network volume will hold fails here on purpose: let the
workflow name a baked one and a `model` parameter pick the volume's at run time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from comfy_worker import nodes_snapshot
from comfy_worker.installed import values_not_installed
from comfy_worker.named_workflows import WorkflowLibrary, WorkflowLibraryError

log = logging.getLogger("check_workflows")
START_TIMEOUT_S = 300


def launch_flags(launch_args: Path) -> list[str]:
    return " ".join(line.split("#", 1)[0] for line in launch_args.read_text().splitlines()).split()


def object_info_of(comfyui: Path, launch_args: Path) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)]
    if os.environ.get("COMFY_API_NODES", "false").strip().lower() not in ("1", "true", "yes", "on"):
        command.append("--disable-api-nodes")
    with tempfile.TemporaryFile() as output:
        server = subprocess.Popen([*command, *launch_flags(launch_args)], cwd=comfyui, stdout=output, stderr=output)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=30) as answer:
                        return json.load(answer)
                except OSError:
                    time.sleep(0.5)
            output.seek(0)
            tail = output.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"ComfyUI did not start (exit code {server.poll()}); its log ends:\n{tail}")
        finally:
            server.terminate()
            server.wait(timeout=30)


def problems(workflows: Path, object_info: dict[str, Any]) -> list[str]:
    try:
        library = WorkflowLibrary.load(workflows, object_info)
    except WorkflowLibraryError as error:
        return str(error).splitlines()
    found = []
    for name, workflow in sorted(library.workflows.items()):
        for missing in values_not_installed(workflow.workflow, object_info, workflow.file_inputs()):
            found.append(f"{workflows / name}.json: {missing} is not installed or not offered")
    log.info("checked %d named workflows: %s", len(library.workflows), ", ".join(library.workflows) or "none")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--comfyui", type=Path, required=True, help="the ComfyUI tree, models and custom nodes in place"
    )
    parser.add_argument("--workflows", type=Path, required=True)
    parser.add_argument(
        "--launch-args", type=Path, default=Path(__file__).resolve().parents[2] / "ComfyUI" / "launch.args"
    )
    parser.add_argument("--save-snapshot", type=Path, help="write the node list here (the worker's NODES_SNAPSHOT)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[check_workflows] %(message)s")
    object_info = object_info_of(args.comfyui, args.launch_args)
    found = problems(args.workflows, object_info)
    for problem in found:
        log.error("%s", problem)
    if args.save_snapshot and not found:
        nodes_snapshot.save(args.save_snapshot, args.comfyui, object_info)
        log.info("saved the node list (%d node types) to %s", len(object_info), args.save_snapshot)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
