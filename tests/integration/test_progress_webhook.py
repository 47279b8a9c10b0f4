"""A job's progress_webhook against the real ComfyUI: every update it sends RunPod also
goes to the receiver, signed, then the final state; a dead receiver costs the job nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from comfy_worker_client import verify_webhook
from tests.support.comfyui_server import REPO_ROOT, free_port
from tests.support.servers import wait_until, webhook_receiver
from tests.support.workflows import decode_image, txt2img

SECRET = "endpoint-webhook-secret-91"


@pytest.fixture
def signed(use_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")  # the receiver is on 127.0.0.1
    return use_settings(PROGRESS_WEBHOOK_SECRET=SECRET, PROGRESS_WEBHOOK_TIMEOUT_S="0.5")


async def test_progress_and_the_result_are_pushed_signed(run_job, signed, progress, caplog, clean_after):
    caplog.set_level(logging.DEBUG)
    with webhook_receiver() as receiver:
        result = await run_job(
            {"workflow": txt2img(steps=6, seed=6101), "progress_webhook": receiver.url}, job_id="hooked"
        )
        await run_job.worker.settled()

    assert "error" not in result, result
    pushed = [verify_webhook(SECRET, body, headers["Webhook-Signature"]) for headers, body in receiver.posts]
    assert {body["id"] for body in pushed} == {"hooked"}
    updates = [body["output"] for body in pushed if body["status"] == "IN_PROGRESS"]
    assert updates == [update for update in progress], "the same payloads, after the same throttle"
    steps = [update["step"] for update in updates if update.get("step")]
    assert steps[0] == 1
    assert steps[-1] == 6
    final = pushed[-1]
    assert final["status"] == "COMPLETED"
    assert decode_image(final["output"]["images"][0]).size == (64, 64)
    # Counted up to the result: the last updates may still be on their way then.
    counts = result["progress_webhook"]
    assert 0 < counts["posted"] <= len(updates)
    assert counts["failed"] == counts["dropped"] == 0
    assert final["output"]["progress_webhook"] == counts
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(result)


async def test_a_dead_receiver_costs_the_job_nothing_and_is_counted(run_job, signed, caplog, clean_after):
    with webhook_receiver(status=500) as receiver:
        result = await run_job({"workflow": txt2img(steps=3, seed=6102), "progress_webhook": receiver.url})
        await run_job.worker.settled()

    assert "error" not in result, result
    assert result["images"], result
    counts = result["progress_webhook"]
    assert counts["posted"] == 0
    assert counts["failed"] >= 1
    assert json.loads(receiver.posts[-1][1])["status"] == "COMPLETED", "the final state is still tried"
    assert "progress webhook" in caplog.text
    assert "HTTP 500" in caplog.text


async def test_a_webhook_is_refused_where_the_endpoint_has_no_secret(run_job, monkeypatch, clean_after):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    with webhook_receiver() as receiver:
        result = await run_job({"workflow": txt2img(steps=1, seed=6104), "progress_webhook": receiver.url})

    assert result["error_type"] == "invalid_input"
    assert result["details"]["problems"][0]["field"] == "input.progress_webhook"
    assert "PROGRESS_WEBHOOK_SECRET" in result["error"]
    assert receiver.posts == []


async def test_the_example_receiver_checks_and_prints_each_update(run_job, signed, tmp_path, clean_after):
    port = free_port()
    log_path = tmp_path / "receiver.log"
    with log_path.open("w") as log_file:
        receiver = await asyncio.create_subprocess_exec(
            *(sys.executable, str(REPO_ROOT / "examples" / "webhook_receiver.py"), "--port", str(port)),
            env={**os.environ, "PROGRESS_WEBHOOK_SECRET": SECRET},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        await asyncio.to_thread(wait_until, lambda: "listening" in log_path.read_text(), 30, "the example receiver")
        url = f"http://127.0.0.1:{port}/hooks/comfy"
        result = await run_job(
            {"workflow": txt2img(steps=3, seed=6103), "progress_webhook": url}, job_id="example-receiver"
        )
        await run_job.worker.settled()
        forged = urllib.request.Request(url, data=b'{"id":"x","status":"COMPLETED"}', method="POST")
        forged.add_header("Webhook-Signature", "t=1,v1=00")
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(urllib.request.urlopen, forged)
    finally:
        receiver.terminate()
        await receiver.wait()

    assert refused.value.code == 401
    printed = log_path.read_text()
    assert "example-receiver: KSampler: step 3/3" in printed
    assert "example-receiver: COMPLETED" in printed
    assert "rejected a POST: the signature does not match" in printed
    assert result["progress_webhook"]["failed"] == 0


async def test_a_cancelled_job_is_pushed_as_cancelled(run_job, signed, progress, clean_after):
    with webhook_receiver() as receiver:
        job = asyncio.create_task(
            run_job({"workflow": txt2img(steps=400, seed=6105), "progress_webhook": receiver.url}, job_id="stopped")
        )
        async with asyncio.timeout(60):
            while not any(update.get("step") for update in progress):  # noqa: ASYNC110 (a plain list)
                await asyncio.sleep(0.02)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await run_job.worker.settled()

    pushed = [verify_webhook(SECRET, body, headers["Webhook-Signature"]) for headers, body in receiver.posts]
    assert any(body["status"] == "IN_PROGRESS" and body["output"].get("step") for body in pushed)
    assert pushed[-1] == {"id": "stopped", "status": "CANCELLED"}
