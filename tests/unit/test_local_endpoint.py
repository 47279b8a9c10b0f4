"""The local endpoint's state machine, through its HTTP API (no worker, no ComfyUI)."""

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from local_endpoint.__main__ import WorkerSupervisor, describe_exit
from local_endpoint.server import LocalEndpoint, worker_environment
from tests.support.comfyui_server import free_port
from tests.support.fake_store import FakeStore
from tests.support.workflows import REPO_ROOT


@pytest.fixture
async def api():
    endpoint = LocalEndpoint(api_key="k", long_poll_s=0.2, worker_key="k")
    client = TestClient(TestServer(endpoint.app()), headers={"Authorization": "Bearer k"})
    await client.start_server()
    yield endpoint, client
    await client.close()


async def call(client, method, path, **kwargs):
    response = await client.request(method, path, **kwargs)
    return response.status, (await response.json() if response.status != 204 else None)


async def test_job_lifecycle_with_progress_and_result(api):
    _, client = api
    _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {"x": 1}})
    job_id = submitted["id"]
    assert submitted["status"] == "IN_QUEUE"

    status, taken = await call(client, "GET", "/worker/job-take/w1?gpu=local&job_in_progress=0")
    assert status == 200
    assert taken == {"id": job_id, "input": {"x": 1}}
    progress = json.dumps({"status": "IN_PROGRESS", "output": {"progress": 0.5}})
    await client.post(f"/worker/job-done/w1/{job_id}?isStream=false", data=progress)
    _, running = await call(client, "GET", f"/v2/local/status/{job_id}")
    assert running["status"] == "IN_PROGRESS"
    assert running["output"] == {"progress": 0.5}
    assert running["workerId"] == "w1"

    await client.post(f"/worker/job-done/w1/{job_id}?isStream=false", data=json.dumps({"output": {"images": []}}))
    _, done = await call(client, "GET", f"/v2/local/status/{job_id}")
    assert done["status"] == "COMPLETED"
    assert done["output"] == {"images": []}
    assert done["executionTime"] >= 0


async def test_error_result_fails_the_job_and_stop_pod_is_counted(api):
    endpoint, client = api
    _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {}})
    await call(client, "GET", "/worker/job-take/w1")
    result = {"error": "node 3 failed", "output": {"error_type": "execution_failed"}, "stopPod": True}
    await client.post(f"/worker/job-done/w1/{submitted['id']}", data=json.dumps(result))
    _, failed = await call(client, "GET", f"/v2/local/status/{submitted['id']}")
    assert failed["status"] == "FAILED"
    assert failed["error"] == "node 3 failed"
    assert endpoint.board.refresh_requests == 1


async def test_cancel_of_a_running_job_is_sent_to_the_worker(api):
    _, client = api
    _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {}})
    await call(client, "GET", "/worker/job-take/w1")
    _, cancelled = await call(client, "POST", f"/v2/local/cancel/{submitted['id']}")
    assert cancelled["status"] == "CANCELLED"
    status, stop = await call(client, "GET", "/worker/job-stop/w1")
    assert status == 200
    assert stop == {"jobsToStop": [submitted["id"]]}
    late = json.dumps({"output": {"images": []}})
    await client.post(f"/worker/job-done/w1/{submitted['id']}", data=late)
    assert (await call(client, "GET", f"/v2/local/status/{submitted['id']}"))[1]["status"] == "CANCELLED"


async def test_execution_timeout_times_the_job_out_and_stops_it(api):
    _, client = api
    _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {}, "policy": {"executionTimeout": 50}})
    await call(client, "GET", "/worker/job-take/w1")
    status, stop = await call(client, "GET", "/worker/job-stop/w1")
    assert stop == {"jobsToStop": [submitted["id"]]}
    assert (await call(client, "GET", f"/v2/local/status/{submitted['id']}"))[1]["status"] == "TIMED_OUT"


async def test_queue_purge_runsync_and_errors(api):
    _, client = api
    for _ in range(2):
        await call(client, "POST", "/v2/local/run", json={"input": {}})
    assert (await call(client, "POST", "/v2/local/purge-queue"))[1] == {"removed": 2, "status": "completed"}
    assert (await call(client, "GET", "/worker/job-take/w1"))[0] == 204  # nothing left, after the long poll
    status, body = await call(client, "POST", "/v2/local/runsync?wait=50", json={"input": {}})
    assert status == 200
    assert body["status"] == "IN_QUEUE"
    assert (await call(client, "POST", "/v2/local/run", json={"nope": 1}))[0] == 400
    assert (await call(client, "GET", "/v2/local/status/unknown"))[0] == 404
    assert (
        await client.post("/v2/local/run", json={"input": {}}, headers={"Authorization": "Bearer bad"})
    ).status == 401
    _, health = await call(client, "GET", "/v2/local/health")
    assert health["jobs"]["inQueue"] == 1
    assert health["jobs"]["cancelled"] == 2


def test_worker_environment_matches_what_the_sdk_derives():
    env = worker_environment("http://127.0.0.1:9", "worker-key")
    take = env["RUNPOD_WEBHOOK_GET_JOB"]
    assert "/job-take/" in take
    assert "?" in take
    assert take.replace("/job-take/", "/job-stop/").startswith("http://127.0.0.1:9/worker/job-stop/")
    assert "$ID" in env["RUNPOD_WEBHOOK_POST_OUTPUT"]
    assert env["RUNPOD_POD_ID"]


async def test_the_worker_api_needs_the_worker_key():
    endpoint = LocalEndpoint(api_key="client-key", worker_key="worker-key", long_poll_s=0.1)
    async with TestClient(TestServer(endpoint.app())) as client:
        await client.post("/v2/local/run", json={"input": {}}, headers={"Authorization": "Bearer client-key"})
        for headers in ({}, {"Authorization": "client-key"}, {"Authorization": "Bearer wrong"}):
            response = await client.get("/worker/job-take/w1", headers=headers)
            assert response.status == 401, headers
        for header in ("worker-key", "bearer worker-key", "Bearer  worker-key "):
            response = await client.get("/worker/ping/w1", headers={"Authorization": header})
            assert response.status == 200, header


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        json.dumps({"input": {}, "policy": "fast"}).encode(),
        json.dumps({"input": {}, "policy": {"executionTimeout": "abc"}}).encode(),
        json.dumps({"input": {}, "policy": {"executionTimeout": -5}}).encode(),
        b'{"input": {}, "policy": {"executionTimeout": NaN}}',
        json.dumps(["input"]).encode(),
        json.dumps({"input": {}, "policy": {"ttl": 0}}).encode(),
        json.dumps({"input": {}, "webhook": "ftp://example.com/hook"}).encode(),
        json.dumps({"input": {}, "webhook": 5}).encode(),
        b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # issue 20, item 3: nested past any limit
    ],
)
async def test_malformed_requests_are_400s_with_a_reason(api, body):
    _, client = api
    response = await client.post("/v2/local/run", data=body)
    assert response.status == 400
    assert (await response.json())["error"]


async def finish(client, job_id, result=None):
    await call(client, "GET", "/worker/job-take/w1")
    await client.post(f"/worker/job-done/w1/{job_id}", data=json.dumps(result or {"output": {"images": []}}))


async def test_status_sync_waits_for_the_end_or_for_wait(api):
    _, client = api
    _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {}})
    job_id = submitted["id"]
    started = asyncio.get_running_loop().time()
    _, still_queued = await call(client, "GET", f"/v2/local/status-sync/{job_id}?wait=10")  # clamped to 1 s
    assert still_queued["status"] == "IN_QUEUE"
    assert asyncio.get_running_loop().time() - started >= 0.9

    waiting = asyncio.ensure_future(call(client, "GET", f"/v2/local/status-sync/{job_id}?wait=5000"))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await finish(client, job_id)
    status, body = await asyncio.wait_for(waiting, 2)
    assert status == 200
    assert body["status"] == "COMPLETED"
    assert body["output"] == {"images": []}


async def test_retry_requeues_a_failed_job_without_its_old_output(api):
    endpoint, client = api
    _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {"n": 1}})
    job_id = submitted["id"]
    assert (await call(client, "POST", f"/v2/local/retry/{job_id}"))[0] == 400  # still queued: not retryable
    await finish(client, job_id, {"error": "boom", "output": {"error_type": "execution_failed"}})

    assert await call(client, "POST", f"/v2/local/retry/{job_id}") == (200, {"id": job_id, "status": "IN_QUEUE"})
    _, requeued = await call(client, "GET", f"/v2/local/status/{job_id}")
    assert requeued == {"id": job_id, "status": "IN_QUEUE"}
    assert (await call(client, "GET", "/worker/job-take/w1"))[1] == {"id": job_id, "input": {"n": 1}}
    _, health = await call(client, "GET", "/v2/local/health")
    assert health["jobs"]["retried"] == 1
    assert health["jobs"]["inProgress"] == 1


async def test_a_job_past_its_ttl_is_dropped_and_a_running_one_stopped(api):
    _, client = api
    _, queued = await call(client, "POST", "/v2/local/run", json={"input": {}, "policy": {"ttl": 100}})
    await asyncio.sleep(0.2)
    assert (await call(client, "GET", f"/v2/local/status/{queued['id']}"))[0] == 404
    assert (await call(client, "GET", "/worker/job-take/w1"))[0] == 204  # it left the queue too

    _, running = await call(client, "POST", "/v2/local/run", json={"input": {}, "policy": {"ttl": 150}})
    await call(client, "GET", "/worker/job-take/w1")
    assert (await call(client, "GET", "/worker/job-stop/w1"))[1] == {"jobsToStop": [running["id"]]}
    assert (await call(client, "GET", f"/v2/local/status/{running['id']}"))[0] == 404


async def test_results_expire_as_on_runpod():
    endpoint = LocalEndpoint(long_poll_s=0.1, worker_key="k", result_retention_s={"run": 0.3, "runsync": 0.1})
    async with TestClient(TestServer(endpoint.app()), headers={"Authorization": "k"}) as client:
        _, by_run = await call(client, "POST", "/v2/local/run", json={"input": {}})
        await finish(client, by_run["id"])
        by_runsync = asyncio.ensure_future(call(client, "POST", "/v2/local/runsync", json={"input": {}}))
        await asyncio.sleep(0.05)
        _, body = await call(client, "GET", "/worker/job-take/w1")
        await client.post(f"/worker/job-done/w1/{body['id']}", data=json.dumps({"output": 1}))
        assert (await by_runsync)[1]["status"] == "COMPLETED"
        await asyncio.sleep(0.15)
        assert (await call(client, "GET", f"/v2/local/status/{body['id']}"))[0] == 404  # after 1 "minute"
        assert (await call(client, "GET", f"/v2/local/status/{by_run['id']}"))[0] == 200  # kept 30 "minutes"
        await asyncio.sleep(0.2)
        assert (await call(client, "GET", f"/v2/local/status/{by_run['id']}"))[0] == 404
        assert endpoint.board.jobs == {}  # nothing piles up


async def test_the_webhook_gets_the_final_status_retried_until_it_answers_200():
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=500 if len(received) < 3 else 200)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    endpoint = LocalEndpoint(long_poll_s=0.1, worker_key="k", webhook_retry_delay_s=0.05)
    async with (
        TestServer(receiver) as hook_server,
        TestClient(TestServer(endpoint.app()), headers={"Authorization": "k"}) as client,
    ):
        hook_url = str(hook_server.make_url("/hook"))
        _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {}, "webhook": hook_url})
        await finish(client, submitted["id"], {"output": {"images": ["x"]}})
        for _ in range(100):
            if len(received) == 3:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a fourth attempt would come by now
        assert len(received) == 3  # the first and two retries; the third answered 200
        assert all(body["id"] == submitted["id"] and body["status"] == "COMPLETED" for body in received)
        assert received[0]["output"] == {"images": ["x"]}


async def test_browsers_may_call_it_and_the_page_is_served(api):
    _, client = api
    preflight = await client.options("/v2/local/run", headers={"Authorization": ""})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    unauthorized = await client.get("/v2/local/health", headers={"Authorization": "wrong"})
    assert unauthorized.status == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == "*"
    page = await client.get("/", headers={"Authorization": ""})
    assert page.status == 200
    assert "<html" in await page.text()
    script = await client.get("/page/app.js", headers={"Authorization": ""})
    assert script.status == 200
    assert await (await client.get("/page-config.json")).json() == {
        "endpointId": "local",
        "keyRequired": True,
        "uploadBucket": None,
    }


async def test_the_api_page_and_swagger_ui_load_without_the_key_and_the_document_needs_it(api):
    _, client = api
    page = await client.get("/api", headers={"Authorization": ""})
    assert page.status == 200
    html = await page.text()
    assert '<script type="module" src="/page/api.js">' in html
    assert '<script src="/swagger-ui/swagger-ui-bundle.js">' in html
    bundle = await client.get("/swagger-ui/swagger-ui-bundle.js", headers={"Authorization": ""})
    assert bundle.status == 200
    assert "SwaggerUIBundle" in await bundle.text()
    assert (await client.get("/swagger-ui/swagger-ui.css", headers={"Authorization": ""})).status == 200
    document = await client.get("/v2/local/openapi.json", headers={"Authorization": ""})
    assert document.status == 401


async def test_the_openapi_documents_job_is_answered_and_kept_as_a_runsync_job(api):
    """The document is a job like any other: its worker's report is taken (not a 500), and the
    job is forgotten a minute later, as a /runsync job is."""
    endpoint, client = api
    asked = asyncio.ensure_future(client.get("/v2/local/openapi.json"))
    status, taken = await call(client, "GET", "/worker/job-take/w1?gpu=local&job_in_progress=0")
    assert taken["input"] == {"list": "openapi"}
    done = await client.post(
        f"/worker/job-done/w1/{taken['id']}?isStream=false", data=json.dumps({"output": {"openapi": "3.1.0"}})
    )
    assert done.status == 200
    answer = await asyncio.wait_for(asked, 30)  # bounded only against a hang
    document = await answer.json()
    assert document["openapi"] == "3.1.0"
    assert document["servers"][0]["url"].endswith("/v2/local")
    assert endpoint.board.jobs[taken["id"]].submitted_by == "runsync"


async def test_a_bad_wait_is_a_400(api):
    _, client = api
    response = await client.post("/v2/local/runsync?wait=abc", json={"input": {}})
    assert response.status == 400


async def test_a_crashing_worker_is_restarted_with_its_reason_and_a_growing_delay(caplog, monkeypatch):
    monkeypatch.setattr("local_endpoint.__main__.FIRST_RESTART_DELAY_S", 0.05)
    command = f"{sys.executable} -c \"print('cannot import torch'); raise SystemExit(3)\""
    supervisor = WorkerSupervisor(command, dict(os.environ))
    with caplog.at_level(logging.INFO, logger="local_endpoint"):
        running = asyncio.ensure_future(supervisor.run())
        await asyncio.sleep(0.6)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    exits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("worker exited")]
    assert len(exits) >= 2
    assert "(status 3)" in exits[0]
    assert "cannot import torch" in exits[0]
    delays = [float(message.split("starting a new one in ")[1].split(" s")[0]) for message in exits]
    assert delays[:2] == [0.05, 0.1], "the wait doubles after each quick crash"


async def test_a_worker_that_exits_as_the_endpoint_stops_is_not_started_again(caplog, monkeypatch):
    """The endpoint's stop may meet a worker's exit (start.sh told to stop at the same moment):
    no worker is started after the stop, even where the supervisor's cancel is lost."""
    monkeypatch.setattr("local_endpoint.__main__.FIRST_RESTART_DELAY_S", 0.2)
    supervisor = WorkerSupervisor(f'{sys.executable} -c "raise SystemExit(0)"', dict(os.environ))
    exits: list[str] = []
    supervisor.on_exit = exits.append
    with caplog.at_level(logging.INFO, logger="local_endpoint"):
        running = asyncio.ensure_future(supervisor.run())
        while not exits:  # noqa: ASYNC110 (polled: the supervisor's callback)
            await asyncio.sleep(0.01)
        supervisor.stopping = True  # as serve() sets it; no cancel: the one 3.11 may swallow
        await asyncio.wait_for(running, 30)  # bounded only against a hang
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("worker started")]
    assert len(starts) == 1
    assert "the worker is not restarted: the endpoint is stopping" in caplog.text


def test_exit_descriptions():
    assert describe_exit(3) == "status 3"
    assert describe_exit(-9) == "killed by SIGKILL"


def test_issue20_10_the_workers_start_up_checks_do_not_need_the_internet():
    assert worker_environment("http://127.0.0.1:9", "k")["RUNPOD_SKIP_AUTO_SYSTEM_CHECKS"] == "true"


async def test_issue20_10_a_worker_that_keeps_exiting_is_reported_by_health_with_the_reason(api, monkeypatch):
    endpoint, client = api
    monkeypatch.setattr("local_endpoint.__main__.FIRST_RESTART_DELAY_S", 0.05)
    command = f"{sys.executable} -c \"print('Network connectivity failed'); raise SystemExit(1)\""
    supervisor = WorkerSupervisor(command, dict(os.environ))
    supervisor.on_exit = endpoint.note_worker_exit
    running = asyncio.ensure_future(supervisor.run())
    try:
        for _ in range(100):
            if supervisor.quick_exits >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    _, health = await call(client, "GET", "/v2/local/health")
    assert health["workers"]["unhealthy"] == 1
    assert health["workers"]["ready"] == 0
    assert health["lastWorkerExit"].startswith("status 1 after ")
    assert health["lastWorkerExit"].endswith(": Network connectivity failed")
    await call(client, "GET", "/worker/ping/w1")
    _, health = await call(client, "GET", "/v2/local/health")
    assert health["workers"]["unhealthy"] == 0
    assert "lastWorkerExit" not in health


async def test_issue20_12_a_wrong_endpoint_id_gets_a_json_404(api):
    _, client = api
    status, body = await call(client, "POST", "/v2/other/run", json={"input": {}})
    assert status == 404
    assert body == {"error": "endpoint 'other' does not exist here (this one is 'local')"}
    status, body = await call(client, "GET", "/v2/local/nothing-here")
    assert status == 404
    assert body["error"].startswith("no such operation")


def test_issue20_11_each_endpoint_gives_its_worker_a_pid_file_of_its_own(tmp_path):
    """Two endpoints from one checkout: their workers' ComfyUI PID files differ and go with them."""
    report = "import os, time; print('PID_FILE=' + os.environ.get('COMFY_PID_FILE', '/unset/x'), flush=True); "
    report += "time.sleep(60)"
    env = {key: value for key, value in os.environ.items() if key != "COMFY_PID_FILE"}
    endpoints = []
    for _ in range(2):
        command = [sys.executable, "-m", "local_endpoint", "--port", str(free_port())]
        command += ["--worker-command", f'{sys.executable} -c "{report}"']
        endpoints.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True))
    pid_files = []
    try:
        for endpoint in endpoints:
            assert endpoint.stdout is not None
            line = next(line for line in endpoint.stdout if line.startswith("PID_FILE="))
            pid_files.append(Path(line.strip().removeprefix("PID_FILE=")))
    finally:
        for endpoint in endpoints:
            endpoint.send_signal(signal.SIGTERM)
            endpoint.wait(30)
    assert pid_files[0] != pid_files[1]
    assert pid_files[0].parent != pid_files[1].parent
    assert not pid_files[0].parent.exists(), "each endpoint removes its folder"
    assert not pid_files[1].parent.exists(), "each endpoint removes its folder"


async def test_issue20_12_stopping_answers_the_workers_pending_long_polls_at_once():
    endpoint = LocalEndpoint(worker_key="k", long_poll_s=60)
    async with TestClient(TestServer(endpoint.app()), headers={"Authorization": "Bearer k"}) as client:
        polls = [asyncio.ensure_future(client.get(f"/worker/{path}/w1")) for path in ("job-take", "job-stop")]
        await asyncio.sleep(0.1)
        await endpoint.close_long_polls()
        done, _ = await asyncio.wait(polls, timeout=10)  # a hang guard; the answers come at once
        assert len(done) == 2
        assert [poll.result().status for poll in polls] == [204, 204]
        await client.post("/v2/local/run", json={"input": {}})
        assert (await client.get("/worker/job-take/w1")).status == 204, "no job is handed out while stopping"


async def test_the_endpoint_refuses_requests_over_runpods_limits(api):
    _, client = api
    over_run = {"input": {"list": "models", "padding": "x" * 10_000_000}}
    status, answer = await call(client, "POST", "/v2/local/run", json=over_run)
    assert status == 413
    assert "over RunPod's limit of 10.0 MB for /run" in answer["error"]
    status, answer = await call(client, "POST", "/v2/local/runsync?wait=1000", json=over_run)
    assert status == 200, "the /runsync limit is 20 MB"
    over_runsync = {"input": {"list": "models", "padding": "x" * 20_000_000}}
    status, answer = await call(client, "POST", "/v2/local/runsync", json=over_runsync)
    assert status == 413
    assert "over RunPod's limit of 20.0 MB for /runsync" in answer["error"]


async def test_the_page_uploads_large_inputs_through_the_endpoints_bucket(api):
    _, plain = api
    status, answer = await call(plain, "POST", "/page-upload?name=a.png", data=b"png")
    assert status == 400
    assert "no bucket for uploads" in answer["error"]

    bucket = FakeStore()
    endpoint = LocalEndpoint(api_key="k", upload_bucket=bucket)
    async with TestClient(TestServer(endpoint.app())) as client:
        status, _ = await call(client, "POST", "/page-upload?name=a.png", data=b"png")
        assert status == 401, "the endpoint's key is needed"
        config = await (await client.get("/page-config.json")).json()
        assert config["uploadBucket"] == "fake"
        status, answer = await call(
            client, "POST", "/page-upload?name=../../etc/a.png", data=b"png", headers={"Authorization": "Bearer k"}
        )
    [(key, (content, content_type))] = bucket.objects.items()
    assert status == 200
    assert answer == {"url": f"https://store.invalid/{key}"}
    assert re.fullmatch(r"uploads/[0-9a-f]{32}/a\.png", key), "a plain file name, under a key of its own"
    assert (content, content_type) == (b"png", "image/png")

    refusing = LocalEndpoint(api_key="k", upload_bucket=FakeStore(fail=True))
    async with TestClient(TestServer(refusing.app())) as client:
        status, answer = await call(
            client, "POST", "/page-upload?name=a.png", data=b"png", headers={"Authorization": "Bearer k"}
        )
    assert status == 502, "the bucket's refusal, for the page to show"
    assert answer["error"].startswith("upload of "), "the bucket's refusal, for the page to show"
