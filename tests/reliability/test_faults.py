"""Faults between the worker and a real ComfyUI, injected by a loopback proxy: cut and
frozen connections, slow links, error statuses and answers that are not ComfyUI's.
Each case checks the job's result; the fixture then checks that the same worker serves
the next job and that ComfyUI's folders are as they were."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.workflows import decode_image, empty_image, txt2img


def job(workflow: dict, job_id: str = "fault") -> dict:
    return {"id": job_id, "input": {"workflow": workflow}}


async def when_sampling(progress: list[dict]) -> None:
    async with asyncio.timeout(60):
        while not any(update.get("step") for update in progress):  # noqa: ASYNC110 (a plain list)
            await asyncio.sleep(0.02)


async def test_everything_cut_mid_job_is_survived(proxied_worker, proxy, progress):
    running = asyncio.create_task(proxied_worker.handle(job(txt2img(steps=30, seed=21))))
    await when_sampling(progress)
    proxy.cut()
    result = await running
    assert "error" not in result, result


async def test_the_websocket_cut_mid_job_then_every_later_job_still_gets_its_events(proxied_worker, proxy, progress):
    running = asyncio.create_task(proxied_worker.handle(job(txt2img(steps=30, seed=22))))
    await when_sampling(progress)
    proxy.cut(websockets_only=True)
    assert "error" not in await running
    progress.clear()

    # A hang guard, not a target: without a new socket the next job would wait forever.
    result = await asyncio.wait_for(proxied_worker.handle(job(txt2img(steps=4, seed=23), "after-the-cut")), 120)

    assert "error" not in result, result
    assert any(update.get("step") == 4 for update in progress), "the new socket receives the next job's events"


async def test_a_frozen_websocket_does_not_hold_the_job(proxied_worker, proxy, progress):
    running = asyncio.create_task(proxied_worker.handle(job(txt2img(steps=12, seed=24))))
    await when_sampling(progress)
    proxy.frozen_websockets = True  # ComfyUI's events stop arriving; the socket stays open
    # A hang guard, not a target: only the silence check (reading the history) can end it.
    result = await asyncio.wait_for(running, 120)
    assert "error" not in result, result


async def test_a_slow_link_only_slows(proxied_worker, proxy):
    proxy.delay_s = 0.02
    result = await proxied_worker.handle(job(empty_image(color=0x202020)))
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (32, 32, 32)


@pytest.mark.parametrize(
    "status, body, error_type",
    [
        (500, b'{"error": "boom"}', "comfyui_error"),
        (200, b"<html>not ComfyUI</html>", "comfyui_error"),
        (200, b'{"number": 1}', "comfyui_error"),
        (403, b"", "comfyui_error"),
    ],
)
async def test_bad_answers_to_the_prompt_fail_the_job_without_replacing_the_worker(
    proxied_worker, proxy, status, body, error_type
):
    proxy.inject("POST", "/prompt", status, body)
    result = await proxied_worker.handle(job(empty_image()))
    assert result["error_type"] == error_type
    assert "refresh_worker" not in result
    assert f"HTTP {status}" in result["error"]


# A node that sends no event for 2.5 s: past EVENT_SILENCE_CHECK_S (1 s here) the worker
# reads the prompt's history (the outputs themselves come from the events, not a read).
SILENT = {"1": {"class_type": "StubbornSleep", "inputs": {"seconds": 2.5}}}


async def state_route(worker) -> str:
    """Where the worker reads a prompt's state: the jobs API where ComfyUI has one, else /history."""
    return "/api/jobs/" if (await worker.comfyui.api.offers()).jobs_api else "/history/"


async def cancel_route(worker) -> str:
    """Where the worker cancels a running prompt: the atomic cancel where ComfyUI has one, else /interrupt."""
    return "/api/jobs/" if (await worker.comfyui.api.offers()).atomic_cancel else "/interrupt"


async def test_a_transient_5xx_on_a_read_is_retried(proxied_worker, proxy):
    proxy.inject("GET", await state_route(proxied_worker), 503, b"busy", times=1)
    result = await proxied_worker.handle(job(SILENT))
    assert "error" not in result, result
    assert proxy.injected == 1


async def test_a_lasting_5xx_on_a_read_fails_the_job_but_not_the_worker(proxied_worker, proxy):
    proxy.inject("GET", await state_route(proxied_worker), 503, b"busy")
    result = await proxied_worker.handle(job(SILENT))
    assert result["error_type"] == "comfyui_error"
    assert "refresh_worker" not in result
    assert proxy.injected >= 3, "retried before giving up"


@pytest.mark.case_class("faults between worker and ComfyUI")
async def test_issue20_2_one_failed_interrupt_is_tried_again_not_a_restart(proxied_worker, proxy, comfyui):
    proxy.inject("POST", await cancel_route(proxied_worker), 503, b"busy", times=1)
    comfyui_pid = comfyui.process.pid
    result = await proxied_worker.handle({"id": "slow", "input": {"workflow": txt2img(steps=500), "timeout_s": 1.5}})
    assert result["error_type"] == "timeout", result
    assert "and was stopped" in result["error"], result
    assert "restarted" not in result["error"]
    assert "refresh_worker" not in result
    assert proxy.injected == 1, "the interrupt met the injected 503 once"
    assert comfyui.process.poll() is None, "ComfyUI was not killed"
    assert comfyui.process.pid == comfyui_pid, "ComfyUI was not killed"
