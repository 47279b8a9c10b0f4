"""Container tests: run only against a built image (scripts/image_test.sh sets
COMFY_WORKER_IMAGE); skipped in the ordinary test run."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local_endpoint.server import worker_environment
from scripts.image.flavours import DEFAULT, by_name
from tests.support.comfyui_server import free_port
from tests.support.servers import wait_until

IMAGE = os.environ.get("COMFY_WORKER_IMAGE")
FLAVOUR = by_name(os.environ.get("COMFY_WORKER_FLAVOUR", DEFAULT.name))
REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    if IMAGE:
        return
    skip = pytest.mark.skip(reason="no image to test: scripts/image_test.sh builds one and sets COMFY_WORKER_IMAGE")
    for item in items:
        if "tests/container" in str(item.fspath):
            item.add_marker(skip)


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@dataclass
class RunningWorker:
    """The image in RunPod's production mode, against a local endpoint on this machine."""

    container: str
    endpoint_url: str
    comfy_url: str

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return docker("exec", self.container, *command, check=False)

    def logs(self) -> str:
        result = docker("logs", self.container, check=False)
        return result.stdout + result.stderr


@pytest.fixture(scope="session")
def running_worker() -> Iterator[RunningWorker]:
    port, comfy_port = free_port(), free_port()
    worker_key = secrets.token_urlsafe(16)
    endpoint = subprocess.Popen(
        # `=`: a key may start with "-", which argparse would take for an option.
        [sys.executable, "-m", "local_endpoint", "--port", str(port), f"--worker-key={worker_key}"],
        cwd=REPO_ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    env = {
        **worker_environment(base, worker_key),
        "COMFY_HOST": f"127.0.0.1:{comfy_port}",
        "COMFY_EXTRA_ARGS": "--cpu",
        "RUNPOD_ENDPOINT_ID": "local",
        "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS": "true",  # models on demand from the tests' server on 127.0.0.1
    }
    env_args = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    container = docker("run", "-d", "--network", "host", *env_args, IMAGE).stdout.strip()
    worker = RunningWorker(container, f"{base}/v2/local", f"http://127.0.0.1:{comfy_port}")
    try:
        wait_until(lambda: endpoint.poll() is not None or answers(f"{base}/v2/local/health"), 120, "the local endpoint")
        assert endpoint.poll() is None, f"the local endpoint exited ({endpoint.returncode}): its output is above"
        wait_until(lambda: answers(f"{worker.comfy_url}/prompt"), 300, "ComfyUI in the container")
        yield worker
    finally:
        print(worker.logs()[-5000:])  # noqa: T201 - shown when a container test fails
        docker("rm", "-f", container, check=False)
        endpoint.terminate()
        endpoint.wait(10)


def tiny_job(steps: int = 2, size: int = 64, seed: int = 1) -> dict:
    """test_input.json on the tiny checkpoint the image test bakes in."""
    job = json.loads((REPO_ROOT / "test_input.json").read_text())
    workflow = job["input"]["workflow"]
    for node in workflow.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = "tiny-random-sd15-noise.safetensors"
        elif node["class_type"] == "EmptyLatentImage":
            node["inputs"].update(width=size, height=size)
        elif node["class_type"] == "KSampler":
            node["inputs"].update(steps=steps, seed=seed)
    return job
