"""Live jobs on a real ComfyUI: progress, timeouts, cancels, crashes and dropped sockets."""

from __future__ import annotations

import asyncio
import base64
import io

import aiohttp
import pytest
from PIL import Image

from comfy_worker.comfyui.comfy_client import ComfyClient
from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from tests.support.comfyui_server import start_comfyui
from tests.support.workflows import decode_image, empty_image, txt2img


def two_sampler_workflow(steps: int) -> dict:
    """A base pass and a refiner pass on its latent, as SDXL-style workflows do."""
    workflow = txt2img(steps=steps)
    workflow["10"] = {
        "class_type": "KSampler",
        "_meta": {"title": "Refiner"},
        "inputs": {**workflow["3"]["inputs"], "latent_image": ["3", 0], "denoise": 0.5, "steps": steps},
    }
    workflow["8"]["inputs"]["samples"] = ["10", 0]
    return workflow


async def comfy_queue(host: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(f"http://{host}/queue") as resp:
        return await resp.json()


async def first_step(progress: list[dict]) -> None:
    async with asyncio.timeout(60):
        while not any(update.get("step") for update in progress):  # noqa: ASYNC110 (progress is a plain list)
            await asyncio.sleep(0.02)


def assert_monotone_to_one(updates: list[dict]) -> None:
    fractions = [u["progress"] for u in updates if "progress" in u]
    assert fractions == sorted(fractions), fractions
    assert fractions[-1] == 1.0
    assert max(fractions[:-1]) < 1.0


async def test_progress_reports_every_sampler_end_and_rises_to_one(run_job, progress):
    steps = 12
    result = await run_job({"workflow": txt2img(steps=steps)})

    assert "error" not in result, result
    sampler_steps = [u["step"] for u in progress if u.get("node_id") == "3" and u.get("step")]
    assert sampler_steps[0] == 1
    assert sampler_steps[-1] == steps
    assert sampler_steps == sorted(sampler_steps)
    assert_monotone_to_one(progress)
    update = next(u for u in progress if u.get("step") == steps)
    assert update["node_class"] == "KSampler"
    assert update["node_title"] == "KSampler"
    assert update["max"] == steps
    assert update["message"] == f"KSampler: step {steps}/{steps}"
    assert update["nodes_total"] == 7
    assert update["elapsed_s"] > 0
    assert progress[0]["status"] == "queued"
    assert progress[-1]["status"] == "collecting_outputs"
    assert all("preview" not in u for u in progress)
    assert set(result["timings"]) == {
        "wait_for_comfyui_s",
        "fetch_models_s",
        "upload_inputs_s",
        "execute_s",
        "collect_outputs_s",
        "total_s",
        "queued_s",
        "comfyui_started_at",
        "comfyui_ended_at",
    }
    timings = result["timings"]
    ran_s = timings["comfyui_ended_at"] - timings["comfyui_started_at"]
    assert 0 < ran_s <= timings["execute_s"]
    assert timings["queued_s"] < timings["execute_s"]


async def test_two_samplers_read_as_one_rising_fraction(run_job, progress):
    result = await run_job({"workflow": two_sampler_workflow(steps=6)})

    assert "error" not in result, result
    assert_monotone_to_one(progress)
    by_node = {u["node_id"]: u["step"] for u in progress if u.get("step") == 6}
    assert set(by_node) == {"3", "10"}
    refiner_start = next(u for u in progress if u.get("node_id") == "10" and u.get("step") == 1)
    base_end = next(u for u in progress if u.get("node_id") == "3" and u.get("step") == 6)
    assert refiner_start["progress"] >= base_end["progress"]


async def test_throttling_thins_the_middle_only(run_job, progress, use_settings):
    use_settings(PROGRESS_UPDATES_PER_S="0.5")
    steps = 30

    result = await run_job({"workflow": txt2img(steps=steps, seed=7)})

    assert "error" not in result, result
    sampler = [u for u in progress if u.get("node_id") == "3" and u.get("step")]
    assert sampler[0]["step"] == 1, "the first and last step are always sent"
    assert sampler[-1]["step"] == steps, "the first and last step are always sent"
    # Between them, at most one update per 2 s of the sampler's own time (measured, not assumed).
    sampling_s = sampler[-1]["elapsed_s"] - sampler[0]["elapsed_s"]
    middle = sampler[1:-1]
    assert len(middle) <= sampling_s * 0.5 + 1, ([u["step"] for u in sampler], sampling_s)
    assert [u["step"] for u in sampler] == sorted(u["step"] for u in sampler)


async def test_previews_arrive_only_when_asked(run_job, progress):
    await run_job({"workflow": txt2img(steps=4, seed=1)})
    assert all("preview" not in u for u in progress)

    result = await run_job({"workflow": txt2img(steps=4, seed=2), "preview": True})

    assert "error" not in result, result
    previews = [u["preview"] for u in progress if "preview" in u]
    assert previews
    assert previews[-1]["mime_type"] == "image/jpeg"
    image = Image.open(io.BytesIO(base64.b64decode(previews[-1]["data"])))
    assert image.format == "JPEG"
    assert max(image.size) <= 256


async def test_timeout_interrupts_comfyui_and_the_next_job_runs(run_job, progress, comfyui, clean_after):
    comfyui_pid = comfyui.process.pid
    result = await run_job({"workflow": txt2img(steps=400, seed=3), "timeout_s": 1.5})

    assert result["error_type"] == "timeout"
    assert "timeout of 1.5 s and was stopped" in result["error"], "interrupted, not killed"
    assert (await comfy_queue(comfyui.host)) == {"queue_running": [], "queue_pending": []}
    assert comfyui.process.poll() is None
    assert comfyui.process.pid == comfyui_pid
    assert "error" not in await run_job({"workflow": empty_image(color=0x010203)})


async def test_cancel_interrupts_comfyui_and_the_next_job_runs(run_job, progress, comfyui, clean_after):
    job = asyncio.create_task(run_job({"workflow": txt2img(steps=400, seed=4)}))
    await first_step(progress)

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    # The cancel returns once ComfyUI has stopped the prompt: nothing runs or waits there.
    assert (await comfy_queue(comfyui.host)) == {"queue_running": [], "queue_pending": []}
    assert any(update.get("step") for update in progress)
    assert comfyui.process.poll() is None
    result = await run_job({"workflow": empty_image(color=0x040506)})
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (4, 5, 6)


async def test_cancel_while_queued_removes_the_prompt(run_job, progress, comfyui, clean_after, worker_settings):
    # Occupy ComfyUI with a prompt from another client, so the job's prompt waits in the queue.
    blocker = {"prompt": txt2img(steps=60, seed=5), "client_id": "someone-else"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://{comfyui.host}/prompt", json=blocker) as resp:
            blocker_id = (await resp.json())["prompt_id"]
        job = asyncio.create_task(run_job({"workflow": txt2img(steps=3, seed=6)}))
        while not progress:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        queue = await comfy_queue(comfyui.host)
        assert queue["queue_pending"] == []
        await session.post(f"http://{comfyui.host}/interrupt", json={"prompt_id": blocker_id})
        await session.post(f"http://{comfyui.host}/history", json={"delete": [blocker_id]})
    assert "error" not in await run_job({"workflow": empty_image()})


async def test_a_second_job_in_flight_waits_in_comfyuis_queue_then_runs(run_job, progress):
    first, second = await asyncio.gather(
        run_job({"workflow": txt2img(steps=8, seed=8)}), run_job({"workflow": empty_image(color=0x0A0B0C)})
    )

    assert "error" not in first
    assert "error" not in second
    assert decode_image(second["images"][0]).getpixel((0, 0)) == (10, 11, 12)
    assert any(u.get("status") == "queued" and u.get("jobs_ahead") == 1 for u in progress)
    assert second["timings"]["queued_s"] > 0
    assert first["timings"]["queued_s"] < second["timings"]["queued_s"]


async def test_dropped_websocket_is_survived(run_job, progress):
    job = asyncio.create_task(run_job({"workflow": txt2img(steps=40, seed=9)}))
    await first_step(progress)

    client = run_job.worker.comfyui.api
    assert isinstance(client, ComfyClient)
    assert client._ws is not None
    await client._ws.close()  # the socket drops; ComfyUI lives on
    result = await job

    assert "error" not in result, result
    assert decode_image(result["images"][0]).size == (64, 64)


async def test_comfyui_dying_mid_job_fails_fast_and_asks_for_a_new_worker(captured_progress, progress, tmp_path):
    doomed = start_comfyui(tmp_path / "doomed")
    worker = Worker(Settings.from_env(doomed.env()), captured_progress)
    try:
        job = asyncio.create_task(worker.handle({"id": "doomed", "input": {"workflow": txt2img(steps=400, seed=10)}}))
        await first_step(progress)
        doomed.process.kill()
        result = await job
        next_result = await worker.handle({"id": "after", "input": {"workflow": empty_image()}})
    finally:
        await worker.close()
        doomed.stop()

    # Told by the process's death, not by a timeout: the error names the exit.
    assert result["error_type"] == "comfyui_unavailable"
    assert result["refresh_worker"] is True
    assert "ComfyUI died during the job" in result["error"]
    assert next_result["error_type"] == "comfyui_unavailable", "a job after the death fails at once too"
