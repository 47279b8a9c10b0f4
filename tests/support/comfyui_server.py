"""Start a real ComfyUI (CPU) for tests and benchmarks, in its own base directory.

The pinned tree and venv come from scripts/dev/setup_local.sh. ComfyUI runs with
the worker's launch flags (ComfyUI/launch.args, as start.sh runs it) plus what a
test machine needs. The base directory is a fresh temporary folder whose models/
links to the local tree's (the generated checkpoint), so tests can check exactly
which files a job leaves behind.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = Path(os.environ.get("LOCAL_DIR", REPO_ROOT / ".local"))
# Another ComfyUI tree (and the Python with its requirements) for the tests' ComfyUI, to
# prove the worker against a newer ComfyUI than the pinned one (docs/development.md).
PINNED_COMFYUI_DIR = LOCAL_DIR / "ComfyUI"  # the pinned tree: what start.sh runs in the tests, with the worker's Python
COMFYUI_DIR = Path(os.environ.get("COMFYUI_TEST_TREE") or PINNED_COMFYUI_DIR)
PYTHON = LOCAL_DIR / "venv" / "bin" / "python"
COMFYUI_PYTHON = Path(os.environ.get("COMFYUI_TEST_PYTHON") or PYTHON)
LAUNCH_FLAGS = shlex.split((REPO_ROOT / "ComfyUI" / "launch.args").read_text(), comments=True)
TEST_CUSTOM_NODES = Path(__file__).resolve().parent / "custom_nodes"
WORKER_NODES = REPO_ROOT / "comfyui_nodes"  # what the image installs beside the manifest's nodes


def link_custom_nodes(custom_nodes: Path) -> None:
    """The worker's own nodes and the tests' nodes, linked into a ComfyUI's custom_nodes folder."""
    custom_nodes.mkdir(exist_ok=True)
    for node in [*WORKER_NODES.iterdir(), *TEST_CUSTOM_NODES.iterdir()]:
        if node.is_dir() and not node.name.startswith("__") and not (custom_nodes / node.name).exists():
            (custom_nodes / node.name).symlink_to(node)


def comfyui_tree(base: Path) -> Path:
    """A ComfyUI folder of our own: the pinned code linked in, fresh input/output/temp."""
    base.mkdir()
    for item in COMFYUI_DIR.iterdir():
        if item.name not in {"input", "output", "temp", "user", "custom_nodes"}:
            (base / item.name).symlink_to(item)
    (base / "custom_nodes").mkdir()
    return base


@dataclass
class ComfyServer:
    process: subprocess.Popen
    host: str
    base_dir: Path
    pid_file: Path
    log_file: Path

    @property
    def model_cache(self) -> Path:
        """Models fetched by jobs: the server reads its model folders, as start.sh sets up."""
        return self.base_dir / "model-cache"

    def env(self) -> dict[str, str]:
        """The worker settings that point at this server."""
        return {
            "COMFY_HOST": self.host,
            "COMFYUI_PATH": str(self.base_dir),
            "COMFY_PID_FILE": str(self.pid_file),
            "MODEL_CACHE_DIR": str(self.model_cache),
        }

    def job_files(self) -> set[Path]:
        """Files in input/, output/ and temp/ (what a job could leave behind)."""
        return {
            path
            for folder in ("input", "output", "temp")
            for path in (self.base_dir / folder).rglob("*")
            if path.is_file()
        }

    def queue(self) -> dict[str, list]:
        """ComfyUI's /queue: {"queue_running": [...], "queue_pending": [...]}."""
        with urllib.request.urlopen(f"http://{self.host}/queue") as response:
            return json.load(response)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_comfyui(base_dir: Path, extra_args: tuple[str, ...] = (), port: int | None = None) -> ComfyServer:
    """A ComfyUI with the worker's and the tests' custom nodes, on `port` or a free one."""
    if not (COMFYUI_DIR / "main.py").exists() or not COMFYUI_PYTHON.exists():
        raise RuntimeError(
            f"no local ComfyUI at {COMFYUI_DIR}: run scripts/dev/setup_local.sh (scripts/ci/test.sh does)"
        )
    base_dir.mkdir(parents=True, exist_ok=True)
    link_custom_nodes(base_dir / "custom_nodes")
    if not (base_dir / "models").exists():
        (base_dir / "models").symlink_to(COMFYUI_DIR / "models")
    # The model cache's folders, as start.sh adds them (from the volume's paths file).
    (base_dir / "model-cache").mkdir(exist_ok=True)
    cache_paths = base_dir / "model-cache-paths.yaml"
    volume_paths = (REPO_ROOT / "ComfyUI" / "extra_model_paths.yaml").read_text()
    cache_paths.write_text(
        volume_paths.replace("runpod_volume:", "model_cache:").replace(
            "base_path: /runpod-volume/models/", f"base_path: {base_dir / 'model-cache'}/"
        )
    )
    port = port or free_port()
    log_file = base_dir / "comfyui.log"
    args = [
        str(COMFYUI_PYTHON),
        "main.py",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        *LAUNCH_FLAGS,
        "--cpu",
        "--base-directory",
        str(base_dir),
        "--disable-api-nodes",  # as start.sh runs it by default (COMFY_API_NODES)
        "--extra-model-paths-config",
        str(cache_paths),
        *extra_args,
    ]
    with open(log_file, "ab") as log:
        process = subprocess.Popen(args, cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT)
    pid_file = base_dir / "comfyui.pid"
    pid_file.write_text(str(process.pid))
    server = ComfyServer(process, f"127.0.0.1:{port}", base_dir, pid_file, log_file)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited during start-up:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://{server.host}/prompt", timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"ComfyUI did not answer within 120 s:\n{server.log_tail()}")
