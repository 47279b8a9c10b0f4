import asyncio
import base64
import io
import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from comfy_worker_client import (
    AsyncEndpoint,
    EndpointAnswered,
    EndpointClient,
    EndpointUnreachable,
    JobFailed,
    RequestTooLarge,
    save_outputs,
)
from comfy_worker_client.cli import ProgressBar, build_parser, main
from tests.support.servers import http_file_server
from tests.support.workflows import REPO_ROOT


def test_save_outputs_writes_base64_and_downloads_urls(tmp_path):
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "clip.webm").write_bytes(b"webm bytes")
    with http_file_server(tmp_path / "served") as base_url:
        output = {
            "images": [
                {"filename": "a.png", "type": "base64", "data": base64.b64encode(b"png bytes").decode(), "node_id": "9"}
            ],
            "videos": [{"filename": "clip.webm", "type": "s3_url", "data": f"{base_url}/clip.webm", "node_id": "12"}],
            "timings": {"total_s": 1},
        }
        with EndpointClient(base_url) as client:
            saved = client.save_outputs(output, tmp_path / "out", "job-1")
            again = client.save_outputs({"images": output["images"]}, tmp_path / "out", "job-2")
    assert [p.name for p in saved] == ["job-1-9-a.png", "job-1-12-clip.webm"]
    assert [p.read_bytes() for p in saved] == [b"png bytes", b"webm bytes"]
    assert again[0].name == "job-2-9-a.png", "a second job does not overwrite the first"
    assert saved[0].exists(), "a second job does not overwrite the first"


def test_file_names_from_the_worker_cannot_escape_the_folder(tmp_path):
    image = {
        "filename": "../../escape.png",
        "type": "base64",
        "data": base64.b64encode(b"x").decode(),
        "node_id": "a/b",
    }
    with EndpointClient("http://127.0.0.1:9") as client:
        [saved] = client.save_outputs({"images": [image]}, tmp_path / "out", "../../job")
    assert saved.parent == tmp_path / "out"
    assert saved.name == "b-escape.png"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_follows_the_payload():
    bar = ProgressBar(Terminal())
    bar.update({"status": "IN_QUEUE"})
    bar.update(
        {"status": "IN_PROGRESS", "output": {"progress": 0.4267, "message": "KSampler: step 3/20", "eta_s": 4.2}}
    )
    assert bar.bar.n == 42.7
    assert bar.bar.desc.startswith("KSampler: step 3/20")
    shown = bar.stream.getvalue().rsplit("\r", 1)[-1]
    assert shown.endswith("] about 4 s left"), shown
    assert ", about" not in shown, "no stray comma before the time left"
    bar.update({"status": "COMPLETED", "output": {"images": []}})
    assert bar.bar.n == 100
    bar.close()


def test_issue20_15_outside_a_terminal_progress_is_plain_lines_one_per_change():
    stream = io.StringIO()
    bar = ProgressBar(stream)
    running = {"status": "IN_PROGRESS", "output": {"progress": 0.25, "message": "KSampler: step 5/20", "eta_s": 3}}
    for status in ({"status": "IN_QUEUE"}, running, running, {"status": "COMPLETED", "output": {}}):
        bar.update(status)
    bar.close()
    assert stream.getvalue().splitlines() == [
        "  0.0% in queue",
        " 25.0% KSampler: step 5/20 (about 3 s left)",
        "100.0% done",
    ]


@pytest.mark.parametrize("content", [None, "{not json", "\udcff"])
def test_issue20_15_a_missing_or_unreadable_job_file_is_one_line_and_exit_2(tmp_path, caplog, content):
    path = tmp_path / "job.json"
    if content is not None:
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
    code = main(["run", str(path), "--base-url", "http://127.0.0.1:9/v2/local"])
    assert code == 2
    [record] = caplog.records
    assert str(path) in record.getMessage()
    assert record.exc_info is None


def test_issue20_15_the_default_output_folder_is_git_ignored():
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    default = build_parser().parse_args(["run", "w.json", "--base-url", "http://x"]).out
    assert f"/{default}/" in ignored


class FakeRunPod:
    """RunPod's routes for one endpoint, recording what it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.statuses = [{"id": "j1", "status": "IN_QUEUE"}, {"id": "j1", "status": "COMPLETED", "output": {}}]

    def app(self) -> web.Application:
        async def run(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != "Bearer good-key":
                return web.json_response({"error": "Unauthorized"}, status=401)
            self.bodies.append({"path": request.path_qs, **await request.json()})
            return web.json_response({"id": "j1", "status": "IN_QUEUE"})

        async def status(request: web.Request) -> web.Response:
            return web.json_response(self.statuses.pop(0))

        app = web.Application()
        app.add_routes([web.post("/v2/e/run", run), web.post("/v2/e/runsync", run), web.get("/v2/e/status/j1", status)])
        return app


async def test_the_async_client_runs_follows_and_names_each_failure():
    fake = FakeRunPod()
    server = TestServer(fake.app())
    await server.start_server()
    endpoint = AsyncEndpoint(str(server.make_url("/v2/e")), "good-key")
    try:
        assert await endpoint.run({"workflow": {}}, execution_timeout_ms=5000) == "j1"
        await endpoint.runsync({"list": "models"}, wait_ms=1000)
        seen: list[str] = []

        async def on_status(status: dict) -> None:
            seen.append(status["status"])

        final = await endpoint.wait("j1", on_status, poll_interval_s=0)
        assert final["status"] == "COMPLETED"
        assert seen == ["IN_QUEUE", "COMPLETED"]
        key = fake.bodies[0]["input"].pop("idempotency_key")
        assert fake.bodies == [
            {"path": "/v2/e/run", "input": {"workflow": {}}, "policy": {"executionTimeout": 5000}},
            {"path": "/v2/e/runsync?wait=1000", "input": {"list": "models"}},  # a question: no key
        ]
        assert re.fullmatch(r"[0-9a-f]{32}", key)
        await endpoint.run({"workflow": {}})
        assert fake.bodies[-1]["input"]["idempotency_key"] not in (key, None), "a key per submit"
        await endpoint.run({"replay": {"workflow": {}}})  # runs a workflow again: a key too
        assert "idempotency_key" in fake.bodies.pop()["input"]
        fake.statuses = [{"id": "j1", "status": "COMPLETED", "output": {}}]

        fake.statuses = [{"id": "j1", "status": "FAILED", "output": {"error": "node 3: bad", "error_type": "x"}}]
        with pytest.raises(JobFailed, match="job j1 FAILED: x: node 3: bad"):
            await endpoint.wait("j1", poll_interval_s=0)

        wrong_key = AsyncEndpoint(endpoint.base_url, "bad-key")
        with pytest.raises(EndpointAnswered) as refused:
            await wrong_key.run({"workflow": {}})
        assert refused.value.key_refused
        assert "bad-key" not in str(refused.value)
        await wrong_key.close()

        too_large = {"workflow": {}, "images": [{"name": "a.png", "image": "A" * 11_000_000}]}
        with pytest.raises(RequestTooLarge, match="over RunPod's limit of 10.0 MB for /run: set a bucket"):
            await endpoint.run(too_large)
        assert len(fake.bodies) == 3, "nothing was sent"
    finally:
        await endpoint.close()
        await server.close()

    nowhere = AsyncEndpoint("http://127.0.0.1:9/v2/e", "good-key")
    with pytest.raises(EndpointUnreachable, match=r"the endpoint at http://127.0.0.1:9/v2/e is unreachable \("):
        await nowhere.status("j1")
    await nowhere.close()


async def test_wait_rides_out_passing_failures_of_the_status_poll_and_not_others():
    """A blip between the client and the endpoint does not lose the job: the poll is tried again."""
    answers: list = []

    async def status(request: web.Request) -> web.Response:
        answer = answers.pop(0)
        if isinstance(answer, int):
            return web.json_response({"error": "busy"}, status=answer)
        return web.json_response(answer)

    app = web.Application()
    app.add_routes([web.get("/v2/e/status/j1", status)])
    server = TestServer(app)
    await server.start_server()
    endpoint = AsyncEndpoint(str(server.make_url("/v2/e")), "key")
    try:
        answers[:] = [502, 429, {"id": "j1", "status": "IN_PROGRESS"}, 503, {"id": "j1", "status": "COMPLETED"}]
        assert (await endpoint.wait("j1", poll_interval_s=0))["status"] == "COMPLETED"
        assert answers == [], "every answer was read"

        answers[:] = [404]
        with pytest.raises(EndpointAnswered, match="HTTP 404"):
            await endpoint.wait("j1", poll_interval_s=0)
        answers[:] = [500] * 6
        with pytest.raises(EndpointAnswered, match="HTTP 500"):
            await endpoint.wait("j1", poll_interval_s=0)
        assert answers == [], "tried POLL_FAILURES_TOLERATED + 1 times, then gave up"
    finally:
        await endpoint.close()
        await server.close()


async def test_an_output_that_cannot_be_written_leaves_no_file(tmp_path):
    """The editor's bridge makes each file first to hold its name: a failed write removes it."""
    broken = {"images": [{"filename": "a.png", "type": "base64", "data": "not base64!", "node_id": "9"}]}
    missing = {"videos": [{"filename": "v.mp4", "type": "s3_url", "data": "http://127.0.0.1:9/v.mp4", "node_id": "3"}]}

    def held(entry: dict) -> Path:
        path = tmp_path / entry["filename"]
        path.touch()
        return path

    for output in (broken, missing):
        with pytest.raises(Exception):  # noqa: B017 - the decoder's or the connection's own error
            await save_outputs(output, held)
    assert list(tmp_path.iterdir()) == []


async def test_a_submit_whose_answer_is_lost_is_sent_again_with_the_same_key():
    """No answer (a timeout), then a 503: the submit goes a third time, the same body each time;
    a refusal (4xx) is not sent again. The worker then runs the job once (tests/integration)."""
    received: list[dict] = []
    answers: list = []
    released = asyncio.Event()

    async def run(request: web.Request) -> web.Response:
        received.append(await request.json())
        answer = answers.pop(0)
        if answer == "hang":
            await released.wait()  # past the client's request timeout: answers only at the end
        if isinstance(answer, int):
            return web.json_response({"error": "busy"}, status=answer)
        return web.json_response({"id": answer, "status": "IN_QUEUE"})

    app = web.Application()
    app.add_routes([web.post("/v2/e/run", run)])
    server = TestServer(app)
    await server.start_server()
    endpoint = AsyncEndpoint(str(server.make_url("/v2/e")), "key", request_timeout_s=0.5)
    endpoint.submit_retry_s = 0.01
    try:
        answers[:] = ["hang", 503, "j3"]
        assert await endpoint.run({"workflow": {}, "idempotency_key": "mine"}) == "j3"
        assert [body["input"] for body in received] == [{"workflow": {}, "idempotency_key": "mine"}] * 3

        received.clear()
        answers[:] = [400]
        with pytest.raises(EndpointAnswered, match="HTTP 400"):
            await endpoint.run({"workflow": {}})
        assert len(received) == 1

        received.clear()
        answers[:] = [502] * 4
        with pytest.raises(EndpointAnswered, match="HTTP 502"):
            await endpoint.run({"workflow": {}})
        assert len(received) == 4, "SUBMIT_ATTEMPTS, then the failure"
        assert len({body["input"]["idempotency_key"] for body in received}) == 1
    finally:
        released.set()
        await endpoint.close()
        await server.close()
