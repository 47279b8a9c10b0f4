"""The local endpoint's state machine, through its HTTP API (no worker, no ComfyUI)."""

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from local_endpoint.server import LocalEndpoint, worker_environment


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
    assert status == 200 and taken == {"id": job_id, "input": {"x": 1}}
    progress = json.dumps({"status": "IN_PROGRESS", "output": {"progress": 0.5}})
    await client.post(f"/worker/job-done/w1/{job_id}?isStream=false", data=progress)
    _, running = await call(client, "GET", f"/v2/local/status/{job_id}")
    assert running["status"] == "IN_PROGRESS" and running["output"] == {"progress": 0.5} and running["workerId"] == "w1"

    await client.post(f"/worker/job-done/w1/{job_id}?isStream=false", data=json.dumps({"output": {"images": []}}))
    _, done = await call(client, "GET", f"/v2/local/status/{job_id}")
    assert done["status"] == "COMPLETED" and done["output"] == {"images": []} and done["executionTime"] >= 0


async def test_error_result_fails_the_job_and_stop_pod_is_counted(api):
    endpoint, client = api
    _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {}})
    await call(client, "GET", "/worker/job-take/w1")
    result = {"error": "node 3 failed", "output": {"error_type": "execution_failed"}, "stopPod": True}
    await client.post(f"/worker/job-done/w1/{submitted['id']}", data=json.dumps(result))
    _, failed = await call(client, "GET", f"/v2/local/status/{submitted['id']}")
    assert failed["status"] == "FAILED" and failed["error"] == "node 3 failed"
    assert endpoint.refresh_requests == 1


async def test_cancel_of_a_running_job_is_sent_to_the_worker(api):
    _, client = api
    _, submitted = await call(client, "POST", "/v2/local/run", json={"input": {}})
    await call(client, "GET", "/worker/job-take/w1")
    _, cancelled = await call(client, "POST", f"/v2/local/cancel/{submitted['id']}")
    assert cancelled["status"] == "CANCELLED"
    status, stop = await call(client, "GET", "/worker/job-stop/w1")
    assert status == 200 and stop == {"jobsToStop": [submitted["id"]]}
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
    assert status == 200 and body["status"] == "IN_QUEUE"
    assert (await call(client, "POST", "/v2/local/run", json={"nope": 1}))[0] == 400
    assert (await call(client, "GET", "/v2/local/status/unknown"))[0] == 404
    assert (
        await client.post("/v2/local/run", json={"input": {}}, headers={"Authorization": "Bearer bad"})
    ).status == 401
    _, health = await call(client, "GET", "/v2/local/health")
    assert health["jobs"]["inQueue"] == 1 and health["jobs"]["cancelled"] == 2


def test_worker_environment_matches_what_the_sdk_derives():
    env = worker_environment("http://127.0.0.1:9", "worker-key")
    take = env["RUNPOD_WEBHOOK_GET_JOB"]
    assert "/job-take/" in take and "?" in take  # the SDK appends &job_in_progress=...
    assert take.replace("/job-take/", "/job-stop/").startswith("http://127.0.0.1:9/worker/job-stop/")
    assert "$ID" in env["RUNPOD_WEBHOOK_POST_OUTPUT"] and env["RUNPOD_POD_ID"]


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
    ],
)
async def test_malformed_requests_are_400s_with_a_reason(api, body):
    _, client = api
    response = await client.post("/v2/local/run", data=body)
    assert response.status == 400
    assert (await response.json())["error"]


async def test_a_bad_wait_is_a_400(api):
    _, client = api
    response = await client.post("/v2/local/runsync?wait=abc", json={"input": {}})
    assert response.status == 400
