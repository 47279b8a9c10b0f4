"""Several jobs in flight on one worker (JOBS_IN_FLIGHT, default 2), against the real ComfyUI:
through the SDK's loop and the local endpoint, and through the worker's handler directly."""

from __future__ import annotations

import asyncio
import time

from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from comfy_worker_client import EndpointClient
from tests.support.comfyui_server import start_comfyui
from tests.support.workflows import decode_image, empty_image, txt2img

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


def sleeping(seconds: float, color: int) -> dict:
    """An image job whose run takes `seconds` (a node that sleeps), so a job behind it waits."""
    workflow = empty_image(color=color)
    workflow["9"] = {"class_type": "StubbornSleep", "inputs": {"seconds": seconds}}
    return workflow


def watch(client: EndpointClient, job_ids: list[str], timeout_s: float = 120) -> dict[str, list[dict]]:
    """Every status of each job, polled until all have ended."""
    seen: dict[str, list[dict]] = {job_id: [] for job_id in job_ids}
    deadline = time.monotonic() + timeout_s
    while not all(statuses and statuses[-1]["status"] in FINAL for statuses in seen.values()):
        assert time.monotonic() < deadline, {job_id: statuses[-1:] for job_id, statuses in seen.items()}
        for job_id, statuses in seen.items():
            if not statuses or statuses[-1]["status"] not in FINAL:
                statuses.append(client.status(job_id))
        time.sleep(0.05)
    return seen


def wait_for(client: EndpointClient, job_id: str, predicate, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while not predicate(status := client.status(job_id)):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def test_two_jobs_in_flight_complete_with_their_own_outputs_and_progress(client):
    first = client.run({"workflow": sleeping(2.0, color=0x102030)})
    second = client.run({"workflow": empty_image(color=0x405060)})

    seen = watch(client, [first, second])

    for job_id, color in ((first, (0x10, 0x20, 0x30)), (second, (0x40, 0x50, 0x60))):
        final = seen[job_id][-1]
        assert final["status"] == "COMPLETED", final
        [image] = final["output"]["images"]
        assert decode_image(image).getpixel((0, 0)) == color, "each job gets its own image"
    waiting = [s["output"] for s in seen[second] if s["status"] == "IN_PROGRESS" and s.get("output")]
    assert any(update.get("jobs_ahead") == 1 and "1 job ahead" in update["message"] for update in waiting), waiting
    assert not any(s["output"] and s["output"].get("jobs_ahead") for s in seen[first][:-1] if s.get("output"))


def test_the_second_jobs_timeout_counts_from_its_own_start(client):
    first = client.run({"workflow": sleeping(3.0, color=0x111111)})
    second = client.run({"workflow": empty_image(color=0x222222), "timeout_s": 2})

    seen = watch(client, [first, second])

    assert seen[first][-1]["status"] == "COMPLETED", seen[first][-1]
    assert seen[second][-1]["status"] == "COMPLETED", "it waited 3 s behind the first job, and ran in far less than 2 s"


def test_cancelling_the_queued_job_leaves_the_running_one_then_cancelling_that_stops_it(client, comfyui):
    running = client.run({"workflow": txt2img(steps=5000)})
    queued = client.run({"workflow": empty_image(color=0x333333)})
    wait_for(client, running, lambda s: (s.get("output") or {}).get("step"))
    wait_for(client, queued, lambda s: (s.get("output") or {}).get("jobs_ahead") == 1)

    assert client.cancel(queued)["status"] == "CANCELLED"
    deadline = time.monotonic() + 30
    while len(comfyui.queue()["queue_pending"]) > 0:  # the worker takes it out of ComfyUI's queue
        assert time.monotonic() < deadline, comfyui.queue()
        time.sleep(0.05)
    step = client.status(running)["output"]["step"]
    later = wait_for(client, running, lambda s: (s.get("output") or {}).get("step", 0) > step + 5)
    assert later["status"] == "IN_PROGRESS", "the running job went on"

    assert client.cancel(running)["status"] == "CANCELLED"
    deadline = time.monotonic() + 30
    while comfyui.queue()["queue_running"]:
        assert time.monotonic() < deadline, "the running prompt was interrupted"
        time.sleep(0.05)
    after = client.run({"workflow": empty_image(color=0x343434)})
    assert watch(client, [after])[after][-1]["status"] == "COMPLETED", "the worker serves the next job"


async def test_comfyui_killed_with_two_jobs_in_flight_fails_both_and_asks_for_a_new_worker(tmp_path):
    server = start_comfyui(tmp_path / "dies")
    worker = Worker(Settings.from_env(server.env()), lambda job, payload: None)
    try:
        await worker.start()
        running = asyncio.ensure_future(worker.handle({"id": "a", "input": {"workflow": txt2img(steps=5000)}}))
        queued = asyncio.ensure_future(worker.handle({"id": "b", "input": {"workflow": empty_image(color=0x444444)}}))
        async with asyncio.timeout(60):
            while not (server.queue()["queue_pending"] and server.queue()["queue_running"]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        server.process.kill()

        results = await asyncio.wait_for(asyncio.gather(running, queued), 60)

        for result in results:
            assert result["error_type"] == "comfyui_unavailable", result
            assert result["refresh_worker"] is True
            assert "ComfyUI" in result["error"]
    finally:
        await worker.close()
        server.stop()
