"""The editor extension's server part (editor_extension/bridge.py) against a fake
endpoint: the key stays on the server, local input files travel with the job, outputs
land in output/ under plain names, and every failure says what to do."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import tracemalloc

import boto3
import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from comfy_worker_client import UploadBucket
from editor_extension.bridge import REMEMBERED_RUNS, Bridge, forget_oldest
from editor_extension.routes import own_host_names, routes
from tests.support.servers import moto_s3

KEY = "rpa_EDITOR_KEY_51"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


class FakeEndpoint:
    """RunPod's client API for one endpoint: /run, /status (queued, then done), /cancel, /runsync."""

    def __init__(self) -> None:
        self.submitted: list[dict] = []
        self.cancelled: list[str] = []
        self.polls = 0
        self.checked: list[dict] = []
        self.check_answer: dict = {"id": "check-1", "status": "COMPLETED", "output": {"valid": True, "nodes": 3}}
        images = [{"filename": "../../ComfyUI_00001_.png", "type": "base64", "data": PNG, "node_id": "9"}]
        self.final = {"id": "job-1", "status": "COMPLETED", "output": {"images": images, "seeds": {"3.seed": 1}}}

    def app(self) -> web.Application:
        async def authorized(request: web.Request) -> None:
            if request.headers.get("Authorization") != f"Bearer {KEY}":
                raise web.HTTPUnauthorized(text=json.dumps({"error": "Unauthorized"}), content_type="application/json")

        async def run(request: web.Request) -> web.Response:
            await authorized(request)
            self.submitted.append(await request.json())
            return web.json_response({"id": "job-1", "status": "IN_QUEUE"})

        async def status(request: web.Request) -> web.Response:
            await authorized(request)
            self.polls += 1
            if self.polls == 1:
                return web.json_response(
                    {"id": "job-1", "status": "IN_PROGRESS", "output": {"progress": 0.5, "node_id": "3"}}
                )
            return web.json_response(self.final)

        async def cancel(request: web.Request) -> web.Response:
            await authorized(request)
            self.cancelled.append(request.match_info["job_id"])
            return web.json_response({"id": request.match_info["job_id"], "status": "CANCELLED"})

        async def runsync(request: web.Request) -> web.Response:
            """A validate-only job, answered as the worker does: its problems, or valid."""
            await authorized(request)
            self.checked.append((await request.json())["input"])
            return web.json_response(self.check_answer)

        app = web.Application()
        app.add_routes(
            [
                web.post("/v2/e1/run", run),
                web.get("/v2/e1/status/{job_id}", status),
                web.post("/v2/e1/cancel/{job_id}", cancel),
                web.post("/v2/e1/runsync", runsync),
            ]
        )
        return app


@pytest.fixture
async def setup(tmp_path):
    endpoint = FakeEndpoint()
    endpoint_server = TestServer(endpoint.app())
    await endpoint_server.start_server()
    (tmp_path / "input" / "sub").mkdir(parents=True)  # output/ is not there yet, as in a fresh ComfyUI
    bridge = Bridge(tmp_path / "user" / "runpod_run.json", tmp_path / "input", tmp_path / "output")
    app = web.Application()
    app.add_routes(routes(bridge))
    client = TestClient(TestServer(app))
    await client.start_server()
    base_url = str(endpoint_server.make_url("/v2/e1"))
    yield client, endpoint, base_url, tmp_path
    await bridge.close()
    await client.close()
    await endpoint_server.close()


@pytest.fixture
async def new_bridge(tmp_path):
    """Makes bridges on tmp_path's folders; closes them after the test."""
    made: list[Bridge] = []

    def make(**options) -> Bridge:
        made.append(Bridge(tmp_path / "settings.json", tmp_path / "input", tmp_path / "output", **options))
        return made[-1]

    yield make
    for bridge in made:
        await bridge.close()


async def call(client, method, path, body=None):
    response = await client.request(method, path, json=body)
    return response.status, await response.json()


async def test_the_key_is_kept_on_the_server_and_never_sent_back(setup):
    client, _, base_url, tmp_path = setup
    status, answer = await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
    assert status == 200
    assert answer == {"endpoint_id": "", "base_url": base_url, "has_key": True}
    assert KEY not in json.dumps(await call(client, "GET", "/runpod/settings"))
    stored = tmp_path / "user" / "runpod_run.json"
    assert json.loads(stored.read_text())["keys"] == {base_url: KEY}
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    status, answer = await call(client, "POST", "/runpod/settings", {"base_url": "ftp://x"})
    assert status == 400
    assert "http:// or https://" in answer["error"]


class KeyCatcher:
    """A server that records every Authorization header it is sent (an attacker's)."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []

    def app(self) -> web.Application:
        async def anything(request: web.Request) -> web.Response:
            self.authorizations.append(request.headers.get("Authorization"))
            return web.json_response({"id": "x", "status": "CANCELLED"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        return app


async def test_a_change_of_endpoint_never_takes_the_key_along(setup):
    """N1: a page that points the settings at its own server gets no key: a key belongs to the
    endpoint URL it was saved with."""
    client, endpoint, base_url, tmp_path = setup
    catcher = KeyCatcher()
    catcher_server = TestServer(catcher.app())
    await catcher_server.start_server()
    try:
        await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
        foreign = str(catcher_server.make_url("/v2/steal"))
        status, answer = await call(client, "POST", "/runpod/settings", {"base_url": foreign})
        assert status == 200
        assert answer["has_key"] is False
        for method, path in (("POST", "/runpod/cancel/anything"), ("GET", "/runpod/status/anything")):
            await call(client, method, path)
        await call(client, "POST", "/runpod/settings", {"endpoint_id": "evil", "base_url": ""})
        assert catcher.authorizations == [None, None]
        assert json.loads((tmp_path / "user" / "runpod_run.json").read_text())["keys"] == {base_url: KEY}

        # Back to the endpoint the key was given with: it is there again, and used.
        status, answer = await call(client, "POST", "/runpod/settings", {"base_url": base_url})
        assert answer["has_key"] is True
        status, _ = await call(client, "POST", "/runpod/cancel/job-1")
        assert status == 200
        assert endpoint.cancelled == ["job-1"]
        status, answer = await call(
            client, "POST", "/runpod/settings", {"base_url": "", "endpoint_id": "", "api_key": "k"}
        )
        assert status == 400
        assert "before its API key" in answer["error"]
        status, answer = await call(client, "POST", "/runpod/settings", {"endpoint_id": "x/../../evil"})
        assert status == 400
        assert "endpoint ID" in answer["error"]
    finally:
        await catcher_server.close()


async def test_a_settings_file_of_the_older_format_keeps_its_key_for_its_endpoint(tmp_path, new_bridge):
    (tmp_path / "settings.json").write_text(json.dumps({"endpoint_id": "e1", "api_key": KEY}))
    bridge = new_bridge()
    assert bridge.public_settings() == {"endpoint_id": "e1", "base_url": "", "has_key": True}
    assert bridge.settings.endpoint() == ("https://api.runpod.ai/v2/e1", KEY)
    bridge.save_settings({"endpoint_id": "e2"})
    assert bridge.settings.endpoint() == ("https://api.runpod.ai/v2/e2", None)


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "rebind.example:8188", "Origin": "http://rebind.example:8188"},  # a DNS-rebound page
        {"Host": "rebind.example:8188"},
        {"Origin": "http://evil.example"},  # a foreign page, Host the real address
    ],
)
async def test_a_page_that_is_not_this_comfyuis_own_is_refused(setup, headers):
    """N1: ComfyUI checks Origin against Host only for loopback names; the routes that hold
    the key refuse a host name that is not this ComfyUI's own, and a foreign origin."""
    client, endpoint, base_url, _ = setup
    await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
    requests_ = [("GET", "/runpod/settings", None), ("POST", "/runpod/settings", {"base_url": "http://evil.example"}),
                 ("POST", "/runpod/cancel/job-1", None), ("GET", "/runpod/status/job-1", None),
                 ("POST", "/runpod/run", {"prompt": {"1": {"class_type": "KSampler", "inputs": {}}}}),
                 ("POST", "/runpod/check", {"prompt": {"1": {"class_type": "KSampler", "inputs": {}}}})]  # fmt: skip
    for method, path, body in requests_:
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status == 403, (method, path)
        assert "this ComfyUI" in (await response.json())["error"]
    assert endpoint.cancelled == []
    assert endpoint.submitted == []
    assert endpoint.polls == 0
    assert (await call(client, "GET", "/runpod/settings"))[1]["base_url"] == base_url


def test_the_hosts_comfyui_serves_are_its_listen_names_and_the_allowed_ones():
    assert own_host_names("0.0.0.0,::", {}) == frozenset({"0.0.0.0", "::"})
    assert own_host_names("my-box", {"RUNPOD_RUN_ALLOWED_HOSTS": "comfy.example.org, Other"}) == frozenset(
        {"my-box", "comfy.example.org", "other"}
    )


async def test_a_run_sends_the_local_input_files_and_saves_the_outputs_in_output(setup):
    client, endpoint, base_url, tmp_path = setup
    await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
    (tmp_path / "input" / "sub" / "photo.png").write_bytes(b"photo-bytes")
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "ComfyUI_00001_.png").write_bytes(b"an earlier run")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "sub/photo.png [input]"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "../../etc/passwd"}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1}},
    }

    status, started = await call(client, "POST", "/runpod/run", {"prompt": prompt, "preview": True})
    _, running = await call(client, "GET", "/runpod/status/job-1")
    _, done = await call(client, "GET", "/runpod/status/job-1")
    _, again = await call(client, "GET", "/runpod/status/job-1")

    assert status == 200
    assert started == {"job_id": "job-1", "files": ["photo.png"], "uploaded": []}
    [sent] = endpoint.submitted
    assert sent["input"]["workflow"] == prompt
    assert sent["input"]["preview"] is True
    assert sent["input"]["images"] == [
        {"name": "photo.png", "subfolder": "sub", "image": base64.b64encode(b"photo-bytes").decode()}
    ]
    assert running["status"] == "IN_PROGRESS"
    assert running["output"]["progress"] == 0.5
    assert done["saved"] == [
        {"filename": "ComfyUI_00001__runpod1.png", "subfolder": "", "type": "output", "node_id": "9"}
    ]
    assert (tmp_path / "output" / "ComfyUI_00001__runpod1.png").read_bytes() == base64.b64decode(PNG)
    assert (tmp_path / "output" / "ComfyUI_00001_.png").read_bytes() == b"an earlier run", "never overwritten"
    assert "images" not in done["output"]
    assert done["output"]["seeds"] == {"3.seed": 1}
    assert again["saved"] == done["saved"], "saved once"
    assert len(list((tmp_path / "output").iterdir())) == 2, "saved once"
    assert sorted(p.name for p in tmp_path.rglob("*.png") if "output" not in p.parts and "input" not in p.parts) == []

    status, _ = await call(client, "POST", "/runpod/cancel/job-1")
    assert status == 200
    assert endpoint.cancelled == ["job-1"]


class FakeHistory:
    def __init__(self, fails: bool = False) -> None:
        self.entries: dict[str, dict] = {}
        self.numbers = iter(range(40, 100))
        self.fails = fails

    def next_number(self) -> int:
        return next(self.numbers)

    def add(self, entry_id: str, entry: dict) -> None:
        if self.fails:
            raise AttributeError("'PromptQueue' object has no attribute 'history'")
        self.entries[entry_id] = entry


async def test_a_run_that_ends_is_added_to_comfyuis_queue_history_with_its_workflow(setup, new_bridge):
    _, endpoint, base_url, tmp_path = setup
    history = FakeHistory()
    bridge = new_bridge(history=history)
    bridge.save_settings({"base_url": base_url, "api_key": KEY})
    prompt = {"9": {"class_type": "SaveImage", "inputs": {}}}
    workflow = {"nodes": [{"id": 9, "type": "SaveImage"}], "links": []}

    await bridge.run(prompt, workflow=workflow)
    await bridge.status("job-1")  # IN_PROGRESS: nothing yet
    assert history.entries == {}
    done = await bridge.status("job-1")
    await bridge.status("job-1")

    assert endpoint.submitted[0]["input"]["extra_pnginfo"] == {"workflow": workflow}, "the images carry the graph"
    [(entry_id, entry)] = history.entries.items()
    number, prompt_id, sent_prompt, extra_data, outputs_to_execute = entry["prompt"]
    assert (entry_id, number, prompt_id, sent_prompt, outputs_to_execute) == ("job-1", 40, "job-1", prompt, ["9"])
    assert extra_data["extra_pnginfo"] == {"workflow": workflow}
    assert extra_data["runpod_job_id"] == "job-1"
    [saved] = done["saved"]
    assert entry["outputs"] == {"9": {"images": [{"filename": saved["filename"], "subfolder": "", "type": "output"}]}}
    assert entry["status"]["status_str"] == "success"
    assert entry["status"]["completed"] is True
    assert [message[0] for message in entry["status"]["messages"]] == ["execution_start", "execution_success"]


async def test_a_failed_run_in_the_history_names_its_node(setup, new_bridge):
    _, endpoint, base_url, tmp_path = setup
    failure = {"error": "node 4 (CheckpointLoaderSimple): no model x", "error_type": "execution_failed",
               "details": {"node_id": "4"}}  # fmt: skip
    endpoint.polls, endpoint.final = 1, {"id": "job-1", "status": "FAILED", "output": failure}
    history = FakeHistory()
    bridge = new_bridge(history=history)
    bridge.save_settings({"base_url": base_url, "api_key": KEY})

    await bridge.run({"4": {"class_type": "CheckpointLoaderSimple", "inputs": {}}})
    await bridge.status("job-1")

    [entry] = history.entries.values()
    assert entry["status"]["status_str"] == "error"
    assert entry["outputs"] == {}
    kind, error = entry["status"]["messages"][-1]
    assert kind == "execution_error"
    assert (error["node_id"], error["node_type"]) == ("4", "CheckpointLoaderSimple")
    assert error["exception_message"] == failure["error"]


async def test_a_history_that_cannot_be_written_changes_nothing_for_the_run(setup, new_bridge):
    _, _, base_url, tmp_path = setup
    bridge = new_bridge(history=FakeHistory(fails=True))
    bridge.save_settings({"base_url": base_url, "api_key": KEY})
    await bridge.run({"9": {"class_type": "SaveImage", "inputs": {}}})
    await bridge.status("job-1")
    done = await bridge.status("job-1")
    assert done["status"] == "COMPLETED"
    assert len(done["saved"]) == 1


async def test_check_is_the_workers_answer_to_a_validate_only_job(setup):
    client, endpoint, base_url, _ = setup
    await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "5": {"class_type": "FancyUpscaler", "inputs": {}},
    }
    workflow = {"nodes": [{"id": 5, "type": "FancyUpscaler", "properties": {"cnr_id": "fancy-upscalers"}}]}
    status, answer = await call(client, "POST", "/runpod/check", {"prompt": prompt, "workflow": workflow})
    assert status == 200
    assert answer == {"valid": True, "problems": []}
    assert endpoint.checked == [{"workflow": prompt, "validate_only": True, "extra_pnginfo": {"workflow": workflow}}]

    problems = [
        {"field": "input.workflow.5.class_type", "problem": "node 5 has type 'FancyUpscaler', which ..."},
        {"field": "input.images", "problem": "not a list"},
    ]
    endpoint.check_answer = {
        "id": "check-2",
        "status": "FAILED",
        "output": {"error": "invalid job input: ...", "error_type": "invalid_input", "details": {"problems": problems}},
    }
    status, answer = await call(client, "POST", "/runpod/check", {"prompt": prompt})
    assert status == 200
    assert answer["valid"] is False
    assert answer["more_problems"] == 0
    assert answer["problems"] == [{"node_id": "5", **problems[0]}, {"node_id": None, **problems[1]}]

    endpoint.check_answer = {"id": "check-3", "status": "FAILED", "output": {"error": "boom", "error_type": "x"}}
    status, answer = await call(client, "POST", "/runpod/check", {"prompt": prompt})
    assert status == 502
    assert answer["error"] == "the endpoint could not check the workflow: boom"


async def test_every_failure_says_what_to_do(setup):
    client, _, base_url, tmp_path = setup
    prompt = {"1": {"class_type": "KSampler", "inputs": {}}}
    status, answer = await call(client, "POST", "/runpod/run", {"prompt": prompt})
    assert status == 400
    assert "no endpoint set" in answer["error"]
    assert "Settings > RunPod" in answer["error"]

    await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": "wrong"})
    status, answer = await call(client, "POST", "/runpod/run", {"prompt": prompt})
    assert status == 401
    assert "refused the API key" in answer["error"]
    assert "wrong" not in answer["error"]

    await call(client, "POST", "/runpod/settings", {"base_url": "http://127.0.0.1:9/v2/x", "api_key": KEY})
    status, answer = await call(client, "POST", "/runpod/run", {"prompt": prompt})
    assert status == 502
    assert "unreachable" in answer["error"]

    await call(client, "POST", "/runpod/settings", {"base_url": base_url})
    (tmp_path / "input" / "huge.png").write_bytes(b"x" * 8_000_000)
    big = {"1": {"class_type": "LoadImage", "inputs": {"image": "huge.png"}}}
    status, answer = await call(client, "POST", "/runpod/run", {"prompt": big})
    assert status == 400
    assert "over RunPod's limit of 10.0 MB for /run" in answer["error"]
    assert "start ComfyUI with BUCKET_ENDPOINT_URL" in answer["error"]
    status, answer = await call(client, "POST", "/runpod/run", {"prompt": "not a graph"})
    assert status == 400
    assert "API format" in answer["error"]


async def test_a_graph_the_endpoint_cannot_be_given_is_refused_naming_its_nodes(setup):
    client, endpoint, base_url, _ = setup
    await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
    # graphToPrompt gives a node whose type is not installed in the editor's ComfyUI no class_type.
    formless = {"3": {"class_type": "KSampler", "inputs": {}}, "77": {"inputs": {}, "_meta": {}}}
    for route in ("/runpod/run", "/runpod/check"):
        status, answer = await call(client, "POST", route, {"prompt": formless})
        assert status == 400, answer
        assert answer["node_ids"] == ["77"], answer
        assert answer["error"].startswith("node 77 has no API form")
        assert "Install its node pack" in answer["error"]
    status, answer = await call(client, "POST", "/runpod/run", {"prompt": {}})
    assert status == 400
    assert "nothing to run" in answer["error"]
    assert "Save Image" in answer["error"]
    assert endpoint.submitted == []


async def test_the_execution_timeout_is_sent_as_runpods_policy(setup):
    client, endpoint, base_url, _ = setup
    await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
    prompt = {"3": {"class_type": "KSampler", "inputs": {}}}
    for timeout_s, policy in ((0, None), (90, {"executionTimeout": 90_000}), (0.2, {"executionTimeout": 1000})):
        status, _ = await call(client, "POST", "/runpod/run", {"prompt": prompt, "execution_timeout_s": timeout_s})
        assert status == 200
        assert endpoint.submitted[-1].get("policy") == policy
    for wrong in ("90", -1, True, 8 * 24 * 3600):
        status, answer = await call(client, "POST", "/runpod/run", {"prompt": prompt, "execution_timeout_s": wrong})
        assert status == 400, wrong
        assert "execution timeout" in answer["error"], wrong
    assert len(endpoint.submitted) == 3


@pytest.mark.parametrize(
    ("final", "advice"),
    [
        ({"status": "TIMED_OUT"}, "raise the execution timeout (Settings > RunPod"),
        ({"status": "FAILED", "output": {"error": "ran longer", "error_type": "timeout"}}, "JOB_TIMEOUT_S is set in"),
        (
            {"status": "FAILED", "output": {"error": "too big", "error_type": "output_too_large"}},
            "the bucket's variables go in the endpoint's environment on RunPod",
        ),
        ({"status": "FAILED", "output": {"error": "bad value", "error_type": "workflow_rejected"}}, None),
        ({"status": "CANCELLED"}, None),
    ],
)
async def test_a_run_that_ends_without_outputs_comes_with_what_to_do(setup, final, advice):
    client, endpoint, base_url, tmp_path = setup
    await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
    endpoint.polls, endpoint.final = 1, {"id": "job-1", **final}
    status, answer = await call(client, "GET", "/runpod/status/job-1")
    assert status == 200
    assert answer["status"] == final["status"]
    assert (advice in answer["advice"]) if advice else "advice" not in answer
    assert not (tmp_path / "output").exists(), "nothing saved"


async def test_inputs_over_runpods_limit_go_through_the_bucket(tmp_path, new_bridge):
    endpoint = FakeEndpoint()
    endpoint_server = TestServer(endpoint.app())
    await endpoint_server.start_server()
    with moto_s3() as s3_url:
        env = {
            "BUCKET_ENDPOINT_URL": s3_url,
            "BUCKET_ACCESS_KEY_ID": "k",
            "BUCKET_SECRET_ACCESS_KEY": "s",
            "BUCKET_NAME": "editor",
            "BUCKET_REGION": "us-east-1",
        }
        boto3.client(
            "s3", endpoint_url=s3_url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        ).create_bucket(Bucket="editor")
        (tmp_path / "input").mkdir()
        big, small = os.urandom(8_000_000), b"small-photo"
        (tmp_path / "input" / "big.png").write_bytes(big)
        (tmp_path / "input" / "small.png").write_bytes(small)
        bridge = new_bridge(bucket=UploadBucket.from_env(env))
        bridge.save_settings({"base_url": str(endpoint_server.make_url("/v2/e1")), "api_key": KEY})
        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "big.png"}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
        }

        started = await bridge.run(prompt)

        [sent] = endpoint.submitted
        by_name = {image["name"]: image["image"] for image in sent["input"]["images"]}
        assert started["uploaded"] == ["big.png"]
        assert by_name["small.png"] == base64.b64encode(small).decode()
        assert by_name["big.png"].startswith(f"{s3_url}/editor/uploads/")
        stored = await asyncio.to_thread(requests.get, by_name["big.png"], timeout=30)
        assert stored.content == big
    await endpoint_server.close()


def test_only_the_latest_runs_are_remembered():
    runs = {f"job-{n}": n for n in range(REMEMBERED_RUNS + 5)}
    forget_oldest(runs)
    assert len(runs) == REMEMBERED_RUNS
    assert "job-4" not in runs
    assert f"job-{REMEMBERED_RUNS + 4}" in runs


async def test_n11_overlapping_status_polls_save_the_outputs_once(setup):
    client, endpoint, base_url, tmp_path = setup
    await call(client, "POST", "/runpod/settings", {"base_url": base_url, "api_key": KEY})
    endpoint.polls = 1  # the job is done
    answers = await asyncio.gather(*(call(client, "GET", "/runpod/status/job-1") for _ in range(4)))

    assert {status for status, _ in answers} == {200}
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["ComfyUI_00001_.png"]
    assert all(answer["saved"][0]["filename"] == "ComfyUI_00001_.png" for _, answer in answers)


async def test_n10_an_output_by_url_is_streamed_to_its_file(tmp_path, new_bridge):
    """A 400 MB video used to sit whole in ComfyUI's memory (and more): now it goes to the
    file chunk by chunk. Measured with a 48 MB body: the peak of Python's allocations (the
    server here included) stays a fraction of it."""
    body = os.urandom(48 * 1024 * 1024)

    async def video(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        view = memoryview(body)  # slices without copies: the server's own share stays small
        for start in range(0, len(body), 256 * 1024):
            await response.write(view[start : start + 256 * 1024])
        return response

    app = web.Application()
    app.router.add_get("/video.mp4", video)
    server = TestServer(app)
    await server.start_server()
    bridge = new_bridge()
    output = {"videos": [{"filename": "clip.mp4", "type": "s3_url", "data": str(server.make_url("/video.mp4"))}]}
    tracemalloc.start()
    try:
        saved = await bridge.save_outputs(output)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await server.close()

    assert saved == [{"filename": "clip.mp4", "subfolder": "", "type": "output", "node_id": ""}]
    assert (tmp_path / "output" / "clip.mp4").read_bytes() == body
    assert peak < len(body) / 4, f"peak {peak} bytes for a {len(body)}-byte body"
