"""The MCP server's translations: tool arguments to job input (local files read),
outputs to MCP content, endpoint failures to words (test_mcp_server.py in the
integration tests runs it through the SDK's client)."""

from __future__ import annotations

import base64

import pytest
import requests

from client.api import JobFailed
from client.mcp_server import EndpointTools, ToolFailed, failure_text, http_failure, output_content, read_media

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
    assert audio.type == "resource" and audio.resource.blob == "AAAA" and audio.resource.mime_type == "audio/flac"


def test_failures_say_what_to_do():
    worker_error = JobFailed(
        {"id": "j", "status": "FAILED", "output": {"error": "node 3: bad", "error_type": "invalid_input"}}
    )
    assert failure_text(worker_error) == "invalid_input: node 3: bad"
    unauthorized = requests.Response()
    unauthorized.status_code = 401
    refused = requests.HTTPError("GET /status/j: HTTP 401: Unauthorized", response=unauthorized)
    assert "refused the API key (HTTP 401): check RUNPOD_API_KEY" in http_failure(refused, "https://api.runpod.ai/v2/x")
