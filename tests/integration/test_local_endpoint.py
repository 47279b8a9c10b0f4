"""End to end: client -> local endpoint -> the SDK's worker loop -> handler -> real ComfyUI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from PIL import Image

from client import EndpointClient, JobFailed, job_input_from_files
from tests.support.comfyui_server import PYTHON, free_port, start_comfyui
from tests.support.workflows import REPO_ROOT, empty_image, txt2img

API_KEY = "local-test-key"


@contextmanager
def running_endpoint(worker_env: dict[str, str], log_file: Path) -> Iterator[str]:
    """The local endpoint with a worker (rp_handler.py, production mode) serving it; yields the base URL."""
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
        f"{PYTHON} rp_handler.py",
    ]
    with open(log_file, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v2/local"
    try:
        deadline = time.monotonic() + 60
        while not worker_ready(base_url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"local endpoint or worker did not come up:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(30)


def worker_ready(base_url: str) -> bool:
    try:
        health = requests.get(f"{base_url}/health", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=1)
        return bool(health.json()["workers"]["ready"])
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def endpoint(comfyui, tmp_path_factory):
    log_file = tmp_path_factory.mktemp("endpoint") / "endpoint.log"
    with running_endpoint(comfyui.env(), log_file) as base_url:
        yield base_url, log_file


@pytest.fixture
def client(endpoint) -> EndpointClient:
    return EndpointClient(endpoint[0], API_KEY)


def comfy_queue(comfyui) -> dict:
    with urllib.request.urlopen(f"http://{comfyui.host}/queue") as resp:
        return json.load(resp)


def wait_until(predicate, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_the_cli_runs_a_job_and_saves_the_png(endpoint, tmp_path):
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(txt2img(steps=3, size=64)))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "client",
            "run",
            str(workflow),
            "--base-url",
            endpoint[0],
            "--api-key",
            API_KEY,
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    [saved] = result.stdout.split()
    image = Image.open(saved)
    assert image.format == "PNG" and image.size == (64, 64)
    assert "100%" in result.stderr  # the progress bar reached the end


def test_progress_shows_before_completion(client):
    statuses = []
    job_id = client.submit({"workflow": txt2img(steps=30, seed=21)})

    final = client.wait(job_id, statuses.append, poll_interval_s=0.05)

    in_progress = [s["output"] for s in statuses if s["status"] == "IN_PROGRESS" and s.get("output")]
    assert in_progress, [s["status"] for s in statuses]
    assert {"progress", "message", "node_id"} <= in_progress[-1].keys()
    assert final["status"] == "COMPLETED" and final["output"]["images"]
    assert final["delayTime"] >= 0 and final["executionTime"] > 0 and final["workerId"] == "local-worker"


def test_cancel_reaches_the_worker_and_interrupts_comfyui(client, comfyui):
    job_id = client.submit({"workflow": txt2img(steps=400, seed=22)})
    wait_until(lambda: (client.status(job_id).get("output") or {}).get("step"))

    assert client.cancel(job_id)["status"] == "CANCELLED"

    wait_until(lambda: comfy_queue(comfyui) == {"queue_running": [], "queue_pending": []}, timeout_s=10)
    assert client.status(job_id)["status"] == "CANCELLED"
    next_job = client.submit({"workflow": empty_image(color=0x070809)})
    assert client.wait(next_job, poll_interval_s=0.05)["status"] == "COMPLETED"


def test_a_failing_workflow_surfaces_its_error(client, endpoint, tmp_path):
    workflow = empty_image()
    workflow["3"] = {"class_type": "NoSuchNode", "inputs": {}}
    job_id = client.submit({"workflow": workflow})

    with pytest.raises(JobFailed) as info:
        client.wait(job_id, poll_interval_s=0.05)

    assert info.value.status["status"] == "FAILED"
    assert "NoSuchNode" in info.value.status["error"]
    assert info.value.status["output"]["error_type"] == "workflow_rejected"
    (tmp_path / "bad.json").write_text(json.dumps(workflow))
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "client",
            "run",
            str(tmp_path / "bad.json"),
            "--base-url",
            endpoint[0],
            "--api-key",
            API_KEY,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1 and "NoSuchNode" in cli.stderr


def test_a_job_over_its_execution_timeout_ends_timed_out(client, comfyui):
    job_id = client.submit({"workflow": txt2img(steps=400, seed=23)}, execution_timeout_ms=2000)

    with pytest.raises(JobFailed) as info:
        client.wait(job_id, poll_interval_s=0.05)

    assert info.value.status["status"] == "TIMED_OUT"
    wait_until(lambda: comfy_queue(comfyui) == {"queue_running": [], "queue_pending": []}, timeout_s=10)


def test_the_api_key_is_required(endpoint):
    assert requests.post(f"{endpoint[0]}/run", json={"input": {}}, timeout=5).status_code == 401


def test_client_api_shapes(client):
    job_id = client.submit({"workflow": empty_image()})
    assert client.wait(job_id, poll_interval_s=0.05)["output"]["images"][0]["type"] == "base64"
    health = client._call("GET", "/health")
    assert health["jobs"]["completed"] >= 1 and health["workers"]["ready"] == 1
    assert client._call("POST", "/purge-queue") == {"removed": 0, "status": "completed"}
    with pytest.raises(requests.HTTPError, match="404"):
        client.status("no-such-job")


def test_job_input_from_a_job_file():
    job = job_input_from_files(REPO_ROOT / "test_input.json", timeout_s=None, output={"format": "webp"})
    assert job["workflow"]["4"]["class_type"] == "CheckpointLoaderSimple"
    assert job["output"] == {"format": "webp"} and "timeout_s" not in job


def test_refresh_worker_replaces_the_worker_when_comfyui_dies(tmp_path):
    doomed = start_comfyui(tmp_path / "doomed")
    log_file = tmp_path / "endpoint.log"
    try:
        with running_endpoint(doomed.env(), log_file) as base_url:
            client = EndpointClient(base_url, API_KEY)
            job_id = client.submit({"workflow": txt2img(steps=400, seed=24)})
            wait_until(lambda: (client.status(job_id).get("output") or {}).get("step"))
            doomed.process.kill()

            with pytest.raises(JobFailed) as info:
                client.wait(job_id, poll_interval_s=0.05)
            wait_until(lambda: worker_replaced(log_file.read_text()))
            health = client._call("GET", "/health")
    finally:
        doomed.stop()

    assert info.value.status["output"]["error_type"] == "comfyui_unavailable"
    assert health["workers"]["refreshRequested"] == 1


def worker_replaced(log: str) -> bool:
    _, replaced, after = log.partition("replacing the worker")
    return bool(replaced) and "worker started" in after
