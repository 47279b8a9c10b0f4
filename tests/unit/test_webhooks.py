"""Progress webhooks: signing, the receiver's check, and a slow or failing receiver
costing the job nothing (a loopback receiver; the worker's jobs are in the integration
tests)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from comfy_worker.core.errors import InvalidJobInput
from comfy_worker.core.settings import Settings
from comfy_worker.progress import webhooks
from comfy_worker.progress.webhooks import ProgressWebhook, signature
from comfy_worker_client import WebhookRejected, verify_webhook
from tests.support.servers import webhook_receiver

SECRET = "whsec-test-7f3a"


def settings(**env: str) -> Settings:
    return Settings.from_env({"PROGRESS_WEBHOOK_SECRET": SECRET, "PROGRESS_WEBHOOK_TIMEOUT_S": "1", **env})


@pytest.fixture
def loopback_allowed(monkeypatch):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")  # the receiver is on 127.0.0.1


def bodies(receiver) -> list[dict]:
    return [verify_webhook(SECRET, body, headers.get("Webhook-Signature")) for headers, body in receiver.posts]


def test_a_signed_body_verifies_and_a_changed_one_does_not():
    body = b'{"id":"j1","status":"IN_PROGRESS"}'
    header = signature(SECRET, body, 1_700_000_000)

    assert verify_webhook(SECRET, body, header, now=lambda: 1_700_000_010) == {"id": "j1", "status": "IN_PROGRESS"}
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook(SECRET, body.replace(b"j1", b"j2"), header, now=lambda: 1_700_000_010)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_webhook("another-secret", body, header, now=lambda: 1_700_000_010)
    with pytest.raises(WebhookRejected, match="older than 300 s"):
        verify_webhook(SECRET, body, header, now=lambda: 1_700_000_000 + 301)
    with pytest.raises(WebhookRejected, match="no Webhook-Signature"):
        verify_webhook(SECRET, body, None)
    with pytest.raises(WebhookRejected, match="not 't=<seconds>,v1=<hex>'"):
        verify_webhook(SECRET, body, "sha256=abc")


async def test_a_webhook_without_the_endpoints_secret_is_refused():
    with pytest.raises(InvalidJobInput) as refused:
        await ProgressWebhook.open("https://example.com/hook", Settings.from_env({}), "j1")
    [problem] = refused.value.details["problems"]
    assert problem["field"] == "input.progress_webhook"
    assert "PROGRESS_WEBHOOK_SECRET" in problem["problem"]


async def test_a_private_receiver_is_refused_before_the_job_runs(monkeypatch):
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://169.254.169.254/latest"):
        with pytest.raises(InvalidJobInput) as refused:
            await ProgressWebhook.open(url, settings(), "j1")
        [problem] = refused.value.details["problems"]
        assert problem["field"] == "input.progress_webhook", url
        assert "non-public address" in problem["problem"], url


async def test_updates_then_the_final_state_arrive_in_order_signed(loopback_allowed):
    with webhook_receiver() as receiver:
        webhook = await ProgressWebhook.open(receiver.url + "?token=abc", settings(), "job-7")
        for step in range(1, 4):
            webhook.offer({"status": "running", "step": step})
        result = webhook.finish({"images": [{"filename": "a.png"}]})
        await webhook.sent()

    assert [body["status"] for body in bodies(receiver)] == ["IN_PROGRESS"] * 3 + ["COMPLETED"]
    assert [body["output"]["step"] for body in bodies(receiver)[:3]] == [1, 2, 3]
    final = bodies(receiver)[-1]
    assert final["id"] == "job-7"
    assert final["output"]["images"] == [{"filename": "a.png"}]
    assert result["progress_webhook"] == final["output"]["progress_webhook"]
    assert webhook.counts() == {"posted": 4, "failed": 0, "dropped": 0}


async def test_an_error_result_is_posted_as_failed_and_a_cancel_as_cancelled(loopback_allowed):
    with webhook_receiver() as receiver:
        failed = await ProgressWebhook.open(receiver.url, settings(), "job-f")
        failed.finish({"error": "missing model", "error_type": "missing_model"})
        cancelled = await ProgressWebhook.open(receiver.url, settings(), "job-c")
        cancelled.cancelled()
        await asyncio.gather(failed.sent(), cancelled.sent())

    by_job = {body["id"]: body for body in bodies(receiver)}
    assert by_job["job-f"]["status"] == "FAILED"
    assert by_job["job-f"]["output"]["error_type"] == "missing_model"
    assert by_job["job-c"] == {"id": "job-c", "status": "CANCELLED"}


async def test_a_slow_receiver_never_blocks_the_sender_and_drops_are_counted(loopback_allowed):
    with webhook_receiver(delay_s=0.3) as receiver:
        webhook = await ProgressWebhook.open(receiver.url, settings(), "job-slow")
        for step in range(40):
            webhook.offer({"step": step})
        # offer() never awaits: the sender has not run yet, so the queue kept the newest 16.
        assert webhook.counts() == {"posted": 0, "failed": 0, "dropped": 40 - webhooks.QUEUE_LENGTH}
        assert receiver.posts == []
        result = webhook.finish({"images": []})
        await webhook.sent()

    assert result["progress_webhook"]["dropped"] == 40 - webhooks.QUEUE_LENGTH
    steps = [body["output"]["step"] for body in bodies(receiver) if body["status"] == "IN_PROGRESS"]
    assert steps == sorted(steps), "the newest updates are kept, in order"
    assert steps[-1] == 39, "the newest updates are kept, in order"
    assert bodies(receiver)[-1]["status"] == "COMPLETED"


async def test_a_receiver_slower_than_the_timeout_misses_updates_and_the_final_state_is_retried(
    loopback_allowed, monkeypatch, caplog
):
    monkeypatch.setattr(webhooks, "RETRY_AFTER_S", (0.0, 0.0))
    with webhook_receiver(status=503) as receiver:
        webhook = await ProgressWebhook.open(receiver.url + "?token=s3cr3t", settings(), "job-503")
        webhook.offer({"step": 1})
        webhook.finish({"images": []})
        await webhook.sent()

    statuses = [json.loads(body)["status"] for _, body in receiver.posts]
    assert statuses == ["IN_PROGRESS"] + ["COMPLETED"] * webhooks.FINAL_TRIES
    assert webhook.counts() == {"posted": 0, "failed": 2, "dropped": 0}
    assert "HTTP 503" in caplog.text
    assert "s3cr3t" not in caplog.text

    with webhook_receiver(delay_s=2.0) as receiver:
        slow = await ProgressWebhook.open(receiver.url, settings(PROGRESS_WEBHOOK_TIMEOUT_S="0.2"), "job-late")
        slow.offer({"step": 1})
        slow.finish({"images": []})
        await slow.sent()
    assert slow.counts() == {"posted": 0, "failed": 2, "dropped": 0}


async def test_a_host_that_turns_private_after_the_check_gets_nothing(loopback_allowed, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    with webhook_receiver() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        webhook = await ProgressWebhook.open(url, settings(), "job-rebind")  # allowed at the check
        monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS")  # now the same host is refused
        monkeypatch.setattr(webhooks, "RETRY_AFTER_S", (0.0, 0.0))
        webhook.offer({"step": 1})
        webhook.finish({"images": []})
        await webhook.sent()

    assert receiver.posts == []
    assert webhook.counts()["failed"] == 2
    assert "non-public address" in caplog.text
