"""End to end: client -> local endpoint -> the SDK's worker loop -> handler -> real ComfyUI."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import requests
from PIL import Image

from comfy_worker_client import EndpointAnswered, EndpointClient, JobFailed, job_input_from_files
from tests.support.comfyui_server import LOCAL_DIR, free_port, start_comfyui
from tests.support.local_endpoint import API_KEY, run_cli, running_endpoint, wait_until_worker_ready
from tests.support.workflows import REPO_ROOT, empty_image, txt2img


def comfy_queue(comfyui) -> dict:
    with urllib.request.urlopen(f"http://{comfyui.host}/queue") as resp:
        return json.load(resp)


def wait_until(predicate, timeout_s: float = 120) -> None:  # a bound only a hang reaches
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_the_cli_runs_a_job_and_saves_the_png(endpoint, tmp_path):
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(txt2img(steps=3, size=64)))

    result = run_cli(endpoint[0], "run", str(workflow), "--out", str(tmp_path / "out"))

    assert result.returncode == 0, result.stderr
    [saved] = result.stdout.split()
    image = Image.open(saved)
    assert image.format == "PNG"
    assert image.size == (64, 64)
    assert "100.0% done" in result.stderr  # the progress reached the end (plain lines: not a terminal)


def test_progress_shows_before_completion(client):
    statuses = []
    job_id = client.run({"workflow": txt2img(steps=30, seed=21)})

    final = client.wait(job_id, statuses.append, poll_interval_s=0.05)

    in_progress = [s["output"] for s in statuses if s["status"] == "IN_PROGRESS" and s.get("output")]
    assert in_progress, [s["status"] for s in statuses]
    assert {"progress", "message", "node_id"} <= in_progress[-1].keys()
    etas = [p["eta_s"] for p in in_progress if "eta_s" in p]
    assert etas, "the time left is estimated once the sampler has a step rate"
    assert all(eta >= 0 for eta in etas), "the time left is estimated once the sampler has a step rate"
    assert final["status"] == "COMPLETED"
    assert final["output"]["images"]
    assert final["delayTime"] >= 0
    assert final["executionTime"] > 0
    assert final["workerId"] == "local-worker"


def test_cancel_reaches_the_worker_and_interrupts_comfyui(client, comfyui):
    job_id = client.run({"workflow": txt2img(steps=400, seed=22)})
    wait_until(lambda: (client.status(job_id).get("output") or {}).get("step"))

    assert client.cancel(job_id)["status"] == "CANCELLED"

    wait_until(lambda: comfy_queue(comfyui) == {"queue_running": [], "queue_pending": []}, timeout_s=10)
    assert client.status(job_id)["status"] == "CANCELLED"
    next_job = client.run({"workflow": empty_image(color=0x070809)})
    assert client.wait(next_job, poll_interval_s=0.05)["status"] == "COMPLETED"


def test_a_failing_workflow_surfaces_its_error(client, endpoint, tmp_path):
    workflow = empty_image()
    workflow["3"] = {"class_type": "NoSuchNode", "inputs": {}}
    job_id = client.run({"workflow": workflow})

    with pytest.raises(JobFailed) as info:
        client.wait(job_id, poll_interval_s=0.05)

    assert info.value.status["status"] == "FAILED"
    assert "NoSuchNode" in info.value.status["error"]
    assert info.value.status["output"]["error_type"] == "invalid_input"
    (tmp_path / "bad.json").write_text(json.dumps(workflow))
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "comfy_worker_client",
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
    assert cli.returncode == 1
    assert "NoSuchNode" in cli.stderr


def test_a_job_over_its_execution_timeout_ends_timed_out(client, comfyui):
    job_id = client.run({"workflow": txt2img(steps=400, seed=23)}, execution_timeout_ms=2000)

    with pytest.raises(JobFailed) as info:
        client.wait(job_id, poll_interval_s=0.05)

    assert info.value.status["status"] == "TIMED_OUT"
    wait_until(lambda: comfy_queue(comfyui) == {"queue_running": [], "queue_pending": []}, timeout_s=10)


def test_the_api_key_is_required(endpoint):
    assert requests.post(f"{endpoint[0]}/run", json={"input": {}}, timeout=5).status_code == 401


def test_client_api_shapes(client):
    job_id = client.run({"workflow": empty_image()})
    assert client.wait(job_id, poll_interval_s=0.05)["output"]["images"][0]["type"] == "base64"
    health = client.call("GET", "/health")
    assert health["jobs"]["completed"] >= 1
    assert health["workers"]["ready"] == 1
    assert client.call("POST", "/purge-queue") == {"removed": 0, "status": "completed"}
    with pytest.raises(EndpointAnswered, match="404"):
        client.status("no-such-job")


def test_job_input_from_a_job_file():
    job = job_input_from_files(REPO_ROOT / "test_input.json", timeout_s=None, output={"format": "webp"})
    assert job["workflow"]["4"]["class_type"] == "CheckpointLoaderSimple"
    assert job["output"] == {"format": "webp"}
    assert "timeout_s" not in job


def test_refresh_worker_replaces_the_worker_when_comfyui_dies(tmp_path):
    doomed = start_comfyui(tmp_path / "doomed")
    log_file = tmp_path / "endpoint.log"
    try:
        with running_endpoint(doomed.env(), log_file) as base_url:
            client = EndpointClient(base_url, API_KEY)
            job_id = client.run({"workflow": txt2img(steps=400, seed=24)})
            wait_until(lambda: (client.status(job_id).get("output") or {}).get("step"))
            doomed.process.kill()

            with pytest.raises(JobFailed) as info:
                client.wait(job_id, poll_interval_s=0.05)
            wait_until(lambda: worker_replaced(log_file.read_text()))
            health = client.call("GET", "/health")
    finally:
        doomed.stop()

    assert info.value.status["output"]["error_type"] == "comfyui_unavailable"
    assert health["workers"]["refreshRequested"] == 1


def worker_replaced(log: str) -> bool:
    _, replaced, after = log.partition("replacing the worker")
    return bool(replaced) and "worker started" in after


def post_json_file(base_url: str, path: str, body: bytes) -> dict:
    response = requests.post(
        f"{base_url}{path}",
        data=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


@pytest.mark.parametrize("example", sorted((REPO_ROOT / "examples").glob("*.json")), ids=lambda p: p.name)
def test_every_example_file_runs_as_a_job(client, endpoint, example):
    submitted = post_json_file(endpoint[0], "/run", example.read_bytes())  # as curl -d @file sends it
    final = client.wait(submitted["id"], poll_interval_s=0.05)
    assert final["status"] == "COMPLETED"
    assert final["output"]["images"]


def doc_block(marker: str) -> str:
    """The code block after `<!-- marker -->` in docs/local.md."""
    readme = (REPO_ROOT / "docs" / "local.md").read_text()
    after = readme.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_the_documented_curl_example_runs_as_written(endpoint):
    script = doc_block("example: local endpoint with curl").replace("http://127.0.0.1:8000/v2/local", endpoint[0])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, "RUNPOD_API_KEY": API_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    *_, last = result.stdout.strip().splitlines()
    final = json.loads(last)
    assert final["status"] == "COMPLETED"
    assert final["output"]["images"][0]["mime_type"] == "image/png"


class WebhookReceiver(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        WebhookReceiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhook_retry_and_status_sync_with_the_real_worker(client, endpoint):
    """A failing job: its webhook gets the FAILED status, /retry runs it again, /status-sync waits for it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WebhookReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    WebhookReceiver.received = []
    workflow = empty_image()
    workflow["3"] = {"class_type": "NoSuchNode", "inputs": {}}
    try:
        body = {"input": {"workflow": workflow}, "webhook": f"http://127.0.0.1:{server.server_port}/hook"}
        job_id = client.call("POST", "/run", body)["id"]
        first = client.call("GET", f"/status-sync/{job_id}?wait=30000")
        assert first["status"] == "FAILED"
        assert "NoSuchNode" in first["error"]
        wait_until(lambda: len(WebhookReceiver.received) == 1)
        assert WebhookReceiver.received[0]["id"] == job_id
        assert WebhookReceiver.received[0]["status"] == "FAILED"

        assert client.call("POST", f"/retry/{job_id}") == {"id": job_id, "status": "IN_QUEUE"}
        again = client.call("GET", f"/status-sync/{job_id}?wait=30000")
        assert again["status"] == "FAILED"
        assert again["output"]["error_type"] == "invalid_input"
        wait_until(lambda: len(WebhookReceiver.received) == 2)
        assert client.call("GET", "/health")["jobs"]["retried"] >= 1
    finally:
        server.shutdown()


def test_a_local_run_saves_its_outputs_under_unique_names(comfyui, tmp_path):
    command = [sys.executable, "scripts/dev/run_local_job.py", "--job", "examples/txt2img-local.json"]
    env = {**os.environ, **comfyui.env()}
    for _ in range(2):
        result = subprocess.run(
            [*command, "--out", str(tmp_path)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
    saved = sorted(tmp_path.iterdir())
    assert len(saved) == 2, "the second run did not overwrite the first"
    for path in saved:
        assert path.name.startswith("local-")
        assert "-9-" in path.name
        assert Image.open(path).size == (128, 128)


def test_22_a_local_run_says_in_one_line_what_is_wrong_with_its_job_file(comfyui, tmp_path):
    env = {**os.environ, **comfyui.env()}
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bare.json").write_text(json.dumps(empty_image(color=0x0A0B0C)))

    def run_local(job: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "scripts/dev/run_local_job.py", "--job", str(job), "--out", str(tmp_path / "out")]
        return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)

    for job, said in (
        (tmp_path / "missing.json", "cannot be read: No such file or directory"),
        (tmp_path / "bad.json", "is not JSON"),
    ):
        result = run_local(job)
        assert result.returncode == 2, result.stderr
        assert said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
    bare = run_local(tmp_path / "bare.json")  # a workflow without {"input": ...}, as comfy-client takes it
    assert bare.returncode == 0, bare.stderr[-2000:]
    [saved] = (tmp_path / "out").iterdir()
    assert Image.open(saved).getpixel((0, 0)) == (10, 11, 12)

    (tmp_path / "long.json").write_text(json.dumps({"input": {"workflow": txt2img(steps=400, seed=25)}}))
    command = [sys.executable, "scripts/dev/run_local_job.py", "--job", str(tmp_path / "long.json")]
    process = subprocess.Popen([*command, "--out", str(tmp_path / "out")], cwd=REPO_ROOT, env=env,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_until(lambda: comfy_queue(comfyui)["queue_running"], 120)  # the job runs in ComfyUI
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "stopped (Ctrl-C)" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    wait_until(lambda: not comfy_queue(comfyui)["queue_running"], 60)  # and its prompt was stopped


def test_a_taken_port_is_named_and_the_endpoint_exits(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "local_endpoint", "--port", str(port)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use by another program" in result.stderr


def test_14c_the_endpoint_stops_a_worker_whose_child_holds_its_output_open(tmp_path):
    """A worker that exits on SIGTERM but leaves a child holding its output pipe (the SDK's
    heartbeat process did) kept the endpoint waiting on the pipe forever."""
    marker = f"{6000 + free_port() % 1000}.5"  # a sleep we can find again
    worker = f"bash -c 'sleep {marker} & exec sleep {marker}'"
    command = [sys.executable, "-m", "local_endpoint", "--port", str(free_port()), "--worker-command", worker]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(sleeps(marker)) == 2, 30)
        process.terminate()
        _, stderr = process.communicate(timeout=120)  # a bound only a hang reaches
    finally:
        process.kill()
    assert process.returncode == 0
    assert "stopped" in stderr.decode()
    assert "output stayed open after it exited" in stderr.decode()
    wait_until(lambda: not sleeps(marker), 10)


def sleeps(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.info["cmdline"] == ["sleep", marker] and process.status() != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def test_local_endpoint_sh_takes_ports_and_the_api_key(tmp_path):
    """The script as docs/local.md shows it: its options reach the endpoint and start.sh's ComfyUI."""
    port, comfy_port = free_port(), free_port()
    log_file = tmp_path / "script.log"
    command = ["bash", "scripts/dev/local_endpoint.sh", "--port", str(port), "--comfy-host", f"127.0.0.1:{comfy_port}"]
    command += ["--api-key", "script-key"]
    env = {**os.environ, "LOCAL_ENDPOINT_API_KEY": ""}
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}/v2/local"
    try:
        wait_until_worker_ready(base_url, "script-key", log_file, timeout_s=180)
        assert requests.get(f"{base_url}/health", timeout=5).status_code == 401
        script_client = EndpointClient(base_url, "script-key")
        final = script_client.wait(script_client.run({"workflow": empty_image()}), poll_interval_s=0.1)
        assert final["status"] == "COMPLETED"
        log = log_file.read_text()
        assert "ComfyUI starting (pid" in log
        assert f"127.0.0.1:{comfy_port}" in log
        # Issue 20, item 13: models fetched by URL stay with this checkout, not in a shared /tmp.
        assert f"Adding extra search path checkpoints {LOCAL_DIR}/model-cache/checkpoints" in log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def test_issue20_12_the_endpoint_and_its_worker_stop_quietly(comfyui, tmp_path):
    log_file = tmp_path / "endpoint.log"
    with running_endpoint(comfyui.env(), log_file) as base_url:
        client = EndpointClient(base_url, API_KEY)
        assert client.wait(client.run({"workflow": txt2img(steps=2)}), poll_interval_s=0.1)["status"] == "COMPLETED"
    log = log_file.read_text(errors="replace")
    assert "[local_endpoint] stopped" in log, log[-2000:]
    assert "did not stop within" not in log, "the worker ended on SIGTERM, without being killed"
    for noise in ("Traceback", "Unclosed", "Event loop is closed", "Task exception was never retrieved"):
        assert noise not in log, f"{noise}: {log[-3000:]}"
