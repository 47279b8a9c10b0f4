"""The MCP server's translations: tool arguments to job input (local files read),
outputs to MCP content, endpoint failures to words (test_mcp_server.py in the
integration tests runs it through the SDK's client)."""

from __future__ import annotations

import argparse
import base64
import itertools

import pytest
from starlette.testclient import TestClient

from comfy_worker_client import AsyncEndpoint, EndpointAnswered, EndpointUnreachable, JobFailed
from comfy_worker_client.mcp_server import (
    EndpointTools,
    ToolFailed,
    build_server,
    http_app,
    http_failure,
    no_progress,
    output_content,
    read_media,
    serve,
)

IMAGE_PARAM = {"type": "string", "contentMediaType": "image/*"}
WORKFLOW = {"name": "img2img", "parameters": {"properties": {"image": IMAGE_PARAM, "prompt": {"type": "string"}}}}


def test_a_local_path_is_read_and_urls_and_base64_pass_as_they_are(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG-bytes")
    tools = EndpointTools(client=None, timeout_s=60)  # type: ignore[arg-type]

    job = tools.named_workflow_input("img2img", {"image": str(photo), "prompt": str(photo)}, WORKFLOW)

    assert job == {
        "workflow_name": "img2img",
        "params": {"image": base64.b64encode(b"\x89PNG-bytes").decode(), "prompt": str(photo)},
    }
    for value in ("https://cdn.example.com/a.png", "s3://bucket/a.png", "data:image/png;base64,AAAA", "iVBORw0KGgo="):
        assert read_media(value, "img2img.image") == value
    with pytest.raises(ToolFailed, match=r"img2img.image: no such file: /nowhere/a.png"):
        read_media("/nowhere/a.png", "img2img.image")


def test_raw_workflows_take_files_by_name():
    tools = EndpointTools(client=None, timeout_s=60)  # type: ignore[arg-type]
    job = tools.raw_workflow_input(
        {"workflow": {"1": {}}, "files": {"../x.png": "https://h/x.png"}, "randomize_seeds": True}
    )
    assert job == {
        "workflow": {"1": {}},
        "images": [{"name": "x.png", "image": "https://h/x.png"}],
        "randomize_seeds": True,
    }
    with pytest.raises(ToolFailed, match="give the workflow graph as a JSON object"):
        tools.raw_workflow_input({"workflow": "not a graph"})


def test_outputs_become_image_content_links_or_embedded_resources():
    image = output_content(
        {"filename": "a.png", "type": "base64", "data": "AAAA", "media": "image", "mime_type": "image/png"}
    )
    assert (image.type, image.data, image.mime_type) == ("image", "AAAA", "image/png")
    video = output_content(
        {"filename": "v.mp4", "type": "s3_url", "data": "https://b/v.mp4?sig", "mime_type": "video/mp4"}
    )
    assert (video.type, str(video.uri), video.name) == ("resource_link", "https://b/v.mp4?sig", "v.mp4")
    audio = output_content(
        {"filename": "s.flac", "type": "base64", "data": "AAAA", "media": "audio", "mime_type": "audio/flac"}
    )
    assert audio.type == "resource"
    assert audio.resource.blob == "AAAA"
    assert audio.resource.mime_type == "audio/flac"


def test_failures_say_what_to_do():
    worker_error = JobFailed(
        {"id": "j", "status": "FAILED", "output": {"error": "node 3: bad", "error_type": "invalid_input"}}
    )
    assert str(worker_error) == "job j FAILED: invalid_input: node 3: bad"
    refused = EndpointAnswered("GET /status/j: ... (HTTP 401): Unauthorized", 401, "Unauthorized")
    assert "refused the API key (HTTP 401): check RUNPOD_API_KEY" in http_failure(refused, "https://api.runpod.ai/v2/x")


class ScriptedClient(AsyncEndpoint):
    """An AsyncEndpoint whose /status answers come from a script, one per poll."""

    def __init__(self, statuses: list[dict]):
        super().__init__("http://endpoint.invalid/v2/x")
        self.statuses = statuses
        self.submitted: list[dict] = []
        self.cancelled: list[str] = []

    async def run(self, job_input: dict, execution_timeout_ms: int | None = None) -> str:
        self.submitted.append(job_input)
        return "job-1"

    async def status(self, job_id: str) -> dict:
        answer = self.statuses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def cancel(self, job_id: str) -> dict:
        self.cancelled.append(job_id)
        return {"status": "CANCELLED"}


async def test_progress_is_notified_only_when_it_rises(monkeypatch):
    """19: the MCP specification wants each notification's progress above the last; the worker's
    status repeats its latest value on every poll."""
    monkeypatch.setattr("comfy_worker_client.mcp_server.POLL_S", 0)
    running = [{"status": "IN_PROGRESS", "output": {"progress": p, "message": "m"}} for p in (0.1, 0.1, 0.5, 0.5, 0.4)]
    client = ScriptedClient([*running, {"status": "COMPLETED", "output": {}}])
    notified: list[float] = []

    async def progress(fraction: float, message: str) -> None:
        notified.append(fraction)

    await EndpointTools(client, timeout_s=60).run_job({"workflow": {}}, progress)
    assert notified == [0.1, 0.5]


async def test_a_failed_poll_is_tried_again_and_a_job_past_the_timeout_is_cancelled(monkeypatch):
    monkeypatch.setattr("comfy_worker_client.mcp_server.POLL_S", 0)
    blip = EndpointUnreachable("the endpoint at http://endpoint.invalid/v2/x is unreachable (ClientOSError)")
    done = {"status": "COMPLETED", "output": {"images": []}}
    client = ScriptedClient([{"status": "IN_QUEUE"}, blip, done])
    assert await EndpointTools(client, timeout_s=60).run_job({"workflow": {}}, no_progress) == {"images": []}

    readings = itertools.chain([0.0], itertools.repeat(31.0))  # submitted at 0; every poll after 30 s
    slow = ScriptedClient([{"status": "IN_QUEUE"}, {"status": "IN_PROGRESS"}])
    tools = EndpointTools(slow, timeout_s=30, clock=lambda: next(readings))
    with pytest.raises(ToolFailed, match="timed out after 30 s and was cancelled"):
        await tools.run_job({"workflow": {}}, no_progress)
    assert slow.cancelled == ["job-1"]


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        ("run_workflow", {"workflow": {"1": {}}, "randomise_seeds": True}, "'randomise_seeds' was unexpected"),
        ("run_workflow", {"workflow": "not a graph"}, "run_workflow.workflow: 'not a graph' is not of type 'object'"),
        ("list_models", {"folder": "loras"}, "'folder' was unexpected"),
        ("img2img", {"prompt": 7}, "img2img.prompt: 7 is not of type 'string'"),
    ],
)
async def test_arguments_the_tools_schema_does_not_allow_are_refused_by_name(tool, arguments, named):
    """N13: a misspelt argument (randomise_seeds) was ignored; now the call fails naming it, and
    nothing is submitted."""
    client = ScriptedClient([])
    tools = EndpointTools(client, timeout_s=60)  # type: ignore[arg-type]
    tools._workflows = [{**WORKFLOW, "parameters": {**WORKFLOW["parameters"], "additionalProperties": False}}]
    result = await tools.call(tool, arguments, no_progress)
    assert result.is_error, result.content[0].text
    assert named in result.content[0].text, result.content[0].text
    assert client.submitted == []


def test_the_http_transport_refuses_a_foreign_host_on_every_bind_address():
    """N12: the SDK keeps its DNS-rebinding protection only for three literal loopback --host
    values; with 0.0.0.0 any Host was accepted."""
    tools = EndpointTools(ScriptedClient([]), timeout_s=60)  # type: ignore[arg-type]
    for host, token in (("0.0.0.0", "s3cret"), ("127.1", None), ("127.0.0.1", None)):
        app = http_app(build_server(tools), host, ["comfy.example.org"], token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with TestClient(app, base_url="http://127.0.0.1:8765") as http:
            rebound = http.post("/mcp", json=INITIALIZE, headers={**headers, "Host": "rebind.example:8765", **ACCEPT})
            assert rebound.status_code == 421, (host, rebound.status_code)
            foreign = http.post("/mcp", json=INITIALIZE, headers={**headers, "Origin": "http://evil.example", **ACCEPT})
            assert foreign.status_code == 403, host
            named = http.post("/mcp", json=INITIALIZE, headers={**headers, "Host": "comfy.example.org:8765", **ACCEPT})
            assert named.status_code == 200, (host, named.text)


def test_the_http_transport_beyond_loopback_needs_its_token(monkeypatch, caplog):
    tools = EndpointTools(ScriptedClient([]), timeout_s=60)  # type: ignore[arg-type]
    with TestClient(http_app(build_server(tools), "0.0.0.0", [], "s3cret"), base_url="http://127.0.0.1:8765") as http:
        assert http.post("/mcp", json=INITIALIZE, headers=ACCEPT).status_code == 401
        wrong = {"Authorization": "Bearer nope", **ACCEPT}
        assert http.post("/mcp", json=INITIALIZE, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret", **ACCEPT}
        assert http.post("/mcp", json=INITIALIZE, headers=right).status_code == 200

    monkeypatch.delenv("COMFY_MCP_TOKEN", raising=False)
    args = argparse.Namespace(transport="http", host="0.0.0.0", port=8765, allowed_host=None, timeout_s=60)
    assert serve(args, ScriptedClient([])) == 2  # type: ignore[arg-type]
    assert "listens beyond this machine: set COMFY_MCP_TOKEN" in caplog.text


ACCEPT = {"Accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
