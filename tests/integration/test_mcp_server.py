"""`comfy-client mcp` through the official mcp SDK's own client, over stdio, against the
local endpoint with the real worker: the tools are the named workflows with their
schemas, a call returns a decodable image with progress on the way, a cancelled call
cancels the job, and bad parameters, a wrong key and an unreachable endpoint come back
as tool errors."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os

import pytest
import requests
from mcp import Client, StdioServerParameters
from PIL import Image

from comfy_worker_client import EndpointClient
from tests.integration.test_live_jobs import comfy_queue
from tests.support.comfyui_server import PYTHON, free_port
from tests.support.local_endpoint import API_KEY
from tests.support.workflows import REPO_ROOT, empty_image, txt2img
from tests.support.workflows import TINY_CHECKPOINT as TINY


def server(base_url: str, api_key: str = API_KEY) -> StdioServerParameters:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BUCKET_", "RUNPOD_API_KEY"))}
    return StdioServerParameters(
        command=str(PYTHON),
        args=["-m", "comfy_worker_client", "mcp", "--base-url", base_url],
        env={**env, "RUNPOD_API_KEY": api_key},
        cwd=str(REPO_ROOT),
    )


def text_of(result) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)


async def test_the_tools_are_the_named_workflows_with_their_schemas(endpoint):
    workflows = EndpointClient(endpoint[0], API_KEY)
    listed = await asyncio.to_thread(lambda: workflows.wait(workflows.run({"list": "workflows"})))
    expected = {workflow["name"]: workflow for workflow in listed["output"]["workflows"]}

    async with Client(server(endpoint[0])) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {*expected, "run_workflow", "check_workflow", "list_models"}
    for name, workflow in expected.items():
        assert tools[name].input_schema == workflow["parameters"], name
        assert tools[name].description == workflow["description"]
    assert tools["txt2img"].input_schema["properties"]["steps"]["maximum"] == 100


async def test_a_call_returns_the_image_its_seeds_and_progress_on_the_way(endpoint):
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with Client(server(endpoint[0])) as client:
        params = {"prompt": "a red fox", "steps": 12, "width": 64, "height": 64, "seed": 1234, "checkpoint": TINY}
        result = await client.call_tool("txt2img", params, progress_callback=on_progress)
        models = await client.call_tool("list_models", {})

    assert not result.is_error, text_of(result)
    [image] = [part for part in result.content if part.type == "image"]
    assert image.mime_type == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(image.data))).size == (64, 64)
    assert result.structured_content["seeds"] == {"3.seed": 1234}
    assert any("KSampler: step" in (message or "") for _, _, message in updates), updates
    fractions = [progress for progress, _, _ in updates]
    assert fractions == sorted(fractions)
    assert all(0 <= f <= 1 for f in fractions)
    assert {t for _, t, _ in updates} == {1.0}
    assert not models.is_error
    assert "checkpoints" in models.structured_content["models"]


def cancelled_jobs(base_url: str) -> int:
    health = requests.get(f"{base_url}/health", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    return int(health.json()["jobs"]["cancelled"])


async def test_a_cancelled_call_cancels_the_job_and_comfyuis_queue_empties(endpoint, comfyui):
    started = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if "step" in (message or ""):
            started.set()

    before = await asyncio.to_thread(cancelled_jobs, endpoint[0])
    async with Client(server(endpoint[0])) as client:
        long_run = {"workflow": txt2img(steps=400, seed=99)}
        call = asyncio.create_task(client.call_tool("run_workflow", long_run, progress_callback=on_progress))
        await asyncio.wait_for(started.wait(), 90)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        after = before
        for _ in range(100):  # the server cancels the job as the call ends
            after = await asyncio.to_thread(cancelled_jobs, endpoint[0])
            if after > before:
                break
            await asyncio.sleep(0.1)

    assert after == before + 1, "the endpoint's job ended CANCELLED"
    idle = {"queue_running": [], "queue_pending": []}
    for _ in range(100):
        if await comfy_queue(comfyui.host) == idle:
            break
        await asyncio.sleep(0.1)
    assert await comfy_queue(comfyui.host) == idle


async def test_failures_come_back_as_tool_errors_that_say_what_is_wrong(endpoint, tmp_path):
    async with Client(server(endpoint[0])) as client:
        out_of_bounds = await client.call_tool("txt2img", {"steps": 1000})
        missing_file = await client.call_tool("img2img", {"image": str(tmp_path / "absent.png")})
        missing_model = await client.call_tool("txt2img", {"checkpoint": "no-such-model.safetensors", "steps": 1})
        raw = await client.call_tool("run_workflow", {"workflow": empty_image(color=0x123456)})
    async with Client(server(endpoint[0], api_key="wrong-key")) as client:
        wrong_key = await client.call_tool("list_models", {})
    async with Client(server("http://127.0.0.1:9/v2/local")) as client:
        unreachable = await client.call_tool("list_models", {})

    # Refused by the tool's schema before it is sent, naming the argument and the bound.
    assert out_of_bounds.is_error
    assert "txt2img.steps: 1000 is greater than the maximum of 100" in text_of(out_of_bounds)
    assert missing_file.is_error
    assert "no such file" in text_of(missing_file)
    assert missing_model.is_error
    assert "input.params.checkpoint: must be an installed file" in text_of(missing_model)
    assert not raw.is_error
    assert [part.type for part in raw.content][0] == "image"
    assert wrong_key.is_error
    assert "refused the API key (HTTP 401)" in text_of(wrong_key)
    assert "wrong-key" not in json.dumps(wrong_key.model_dump(mode="json"))
    assert unreachable.is_error
    assert "unreachable" in text_of(unreachable)


async def test_the_same_tools_over_streamable_http(endpoint, tmp_path):
    port = free_port()
    params = server(endpoint[0])
    with (tmp_path / "mcp-http.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            params.command, *params.args, "--transport", "http", "--port", str(port),
            env=params.env, cwd=params.cwd, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        for _ in range(100):
            try:
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    tools = {tool.name for tool in (await client.list_tools()).tools}
                    raw = await client.call_tool("run_workflow", {"workflow": empty_image(color=0x0A0B0C)})
                break
            except Exception:  # not listening yet
                await asyncio.sleep(0.2)
        else:
            raise AssertionError((tmp_path / "mcp-http.log").read_text())
    finally:
        process.terminate()
        await process.wait()

    assert {"txt2img", "run_workflow", "list_models"} <= tools
    [image] = [part for part in raw.content if part.type == "image"]
    assert Image.open(io.BytesIO(base64.b64decode(image.data))).getpixel((0, 0)) == (10, 11, 12)


async def test_check_workflow_says_what_the_endpoint_lacks_running_nothing(endpoint, comfyui):
    lacking = txt2img(steps=2, size=64)
    lacking["4"]["inputs"]["ckpt_name"] = "tiny_random_sd15_noise.safetensors"  # a typo of the installed one
    async with Client(server(endpoint[0])) as client:
        runnable = await client.call_tool("check_workflow", {"workflow": txt2img(steps=2, size=64)})
        missing = await client.call_tool("check_workflow", {"workflow": lacking})

    assert not runnable.is_error, text_of(runnable)
    assert runnable.structured_content["valid"] is True, text_of(runnable)
    assert missing.is_error
    assert "input.workflow.4.inputs.ckpt_name" in text_of(missing)
    assert f"closest: {TINY}" in text_of(missing)
    assert await comfy_queue(comfyui.host) == {"queue_running": [], "queue_pending": []}
