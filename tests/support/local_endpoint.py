"""The local endpoint with a real worker behind it, for the client, SDK and page tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support.comfyui_server import PYTHON, free_port
from tests.support.workflows import REPO_ROOT

API_KEY = "local-test-key"
STOP_BOUND_S = 180


@contextmanager
def running_endpoint(
    worker_env: dict[str, str], log_file: Path, worker_command: str = f"{PYTHON} rp_handler.py", ready_s: float = 60
) -> Iterator[str]:
    """The local endpoint with a worker (by default rp_handler.py, production mode) serving it;
    yields the base URL."""
    port = free_port()
    env = {**os.environ, **worker_env, "PROGRESS_UPDATES_PER_S": "20"}
    command = [
        str(PYTHON),
        "-m",
        "local_endpoint",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--worker-command",
        worker_command,
    ]
    with open(log_file, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v2/local"
    try:
        wait_until_worker_ready(base_url, API_KEY, log_file, timeout_s=ready_s)
        yield base_url
    finally:
        process.terminate()
        # Bounded only against a hang: the worker may finish its jobs (SHUTDOWN_GRACE_S) and
        # stop ComfyUI first, and a loaded machine is slow at each.
        process.wait(STOP_BOUND_S)


def wait_until_worker_ready(base_url: str, api_key: str, log_file: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not worker_ready(base_url, api_key):
        if time.monotonic() > deadline:
            raise RuntimeError(f"local endpoint or worker did not come up:\n{log_file.read_text()[-3000:]}")
        time.sleep(0.2)


def worker_ready(base_url: str, api_key: str) -> bool:
    try:
        health = requests.get(f"{base_url}/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=1)
        return bool(health.json()["workers"]["ready"])
    except (requests.RequestException, ValueError, KeyError):
        return False


def run_cli(base_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`comfy-client <arguments>` against the local endpoint at `base_url`, as a user runs it
    (blocking: call it in a thread from async tests)."""
    command = [sys.executable, "-m", "comfy_worker_client", *arguments, "--base-url", base_url, "--api-key", API_KEY]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
