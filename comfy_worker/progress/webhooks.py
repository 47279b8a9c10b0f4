"""Progress pushed to the job's own URL: signed POSTs of each update and of the final state.

Contract: `ProgressWebhook.open(url, settings)` (a coroutine) checks the receiver
before the job runs: the endpoint must have PROGRESS_WEBHOOK_SECRET, and the host must
resolve to public addresses as an input URL's must; either refusal is an
`InvalidJobInput` on `input.progress_webhook`. Then, in the event loop that opened it:

- `offer(payload)` (the job's progress sink, after the throttle) never blocks and
  never raises: it queues a POST of `{"id", "status": "IN_PROGRESS", "output": payload}`,
  the body a client polling /status would see. At most QUEUE_LENGTH wait; when full,
  the oldest waiting update is dropped (a newer one says more) and counted.
- `finish(result)` queues the final state (`COMPLETED`, or `FAILED` when the result is
  an error, with the result as `output`) and returns the result with the counts so far
  (`"progress_webhook": {"posted", "failed", "dropped"}`); `cancelled()` queues a
  `CANCELLED` state instead. The final POST is never dropped and gets FINAL_TRIES tries.
- `sent()` waits until the sender has finished (the worker's `settled`); `when_sent`
  calls back then (the worker forgets the webhook).

One sender task per job POSTs in order over one kept-open connection, each POST within
PROGRESS_WEBHOOK_TIMEOUT_S, so a slow or failing receiver costs the job nothing but
skipped updates. Each connection goes only to addresses checked at connect time (no
DNS rebinding); redirects are not followed and no proxy is used.

Every POST is signed as Stripe signs its webhooks: the header
`Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
endpoint's PROGRESS_WEBHOOK_SECRET as the key; `client.verify_webhook` checks it.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from ..core.contract import JobState
from ..core.errors import InvalidJobInput
from ..core.settings import Settings
from ..core.sources import redact, scrub_urls
from ..transfer.downloads import DownloadRefused, refusal, resolve

log = logging.getLogger(__name__)

FIELD = "input.progress_webhook"
SIGNATURE_HEADER = "Webhook-Signature"
QUEUE_LENGTH = 16
FINAL_TRIES = 3
RETRY_AFTER_S = (1.0, 3.0)  # before the final state's second and third try
NO_SECRET = (
    "this endpoint has no PROGRESS_WEBHOOK_SECRET, and the worker signs every webhook POST with it "
    "(set it in the endpoint's environment, then verify the Webhook-Signature header in the receiver)"
)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The Webhook-Signature header's value for a body sent at `timestamp` (unix seconds)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver for webhook connections: a host's addresses, all public unless
    private addresses are allowed (`downloads.resolve`, in a thread). aiohttp asks it at
    every new connection (its DNS cache is off), so a host cannot rebind after the check.
    An address literal never reaches a resolver; `ProgressWebhook.open` checks those."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await asyncio.to_thread(resolve, host, port)
        except DownloadRefused as exc:
            raise OSError(errno.EACCES, refusal(exc)) from None  # aiohttp shows its strerror
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class ProgressWebhook:
    def __init__(self, url: str, secret: str, job_id: str, timeout_s: float, *, clock: Callable[[], float] = time.time):
        """Use `open`, which checks the receiver first."""
        self.url = url
        self._secret = secret
        self._job_id = job_id
        self._timeout_s = timeout_s
        self._clock = clock
        self._waiting: collections.deque[dict[str, Any]] = collections.deque()
        self._final: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self.posted = self.failed = self.dropped = 0
        self._warned = False
        self._task = asyncio.get_running_loop().create_task(self._send_all(), name=f"webhook-{job_id}")

    @classmethod
    async def open(cls, url: str, settings: Settings, job_id: str) -> ProgressWebhook:
        if not settings.progress_webhook_secret:
            raise InvalidJobInput([(FIELD, NO_SECRET)])
        parsed = urlparse(url)
        try:
            await asyncio.to_thread(
                resolve, parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
            )
        except DownloadRefused as exc:
            raise InvalidJobInput([(FIELD, refusal(exc))]) from None
        return cls(url, settings.progress_webhook_secret, job_id, settings.progress_webhook_timeout_s)

    def offer(self, payload: dict[str, Any]) -> None:
        if self._final is not None:
            return
        if len(self._waiting) >= QUEUE_LENGTH:
            self._waiting.popleft()
            self.dropped += 1
        self._waiting.append({"id": self._job_id, "status": JobState.IN_PROGRESS, "output": payload})
        self._wake.set()

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """The result with the webhook's counts; its final state is queued to send."""
        result = {**result, "progress_webhook": self.counts()}
        self._queue_final(
            {
                "id": self._job_id,
                "status": JobState.FAILED if "error" in result else JobState.COMPLETED,
                "output": result,
            }
        )
        return result

    def cancelled(self) -> None:
        self._queue_final({"id": self._job_id, "status": JobState.CANCELLED})

    def counts(self) -> dict[str, int]:
        return {"posted": self.posted, "failed": self.failed, "dropped": self.dropped}

    async def sent(self) -> None:
        await asyncio.shield(self._task)

    def when_sent(self, callback: Callable[[ProgressWebhook], object]) -> None:
        """Call `callback(self)` once the sender has finished."""
        self._task.add_done_callback(lambda _task: callback(self))

    def _queue_final(self, body: dict[str, Any]) -> None:
        if self._final is None:
            self._final = body
            self._wake.set()

    async def _send_all(self) -> None:
        connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(), use_dns_cache=False, limit=1)
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._waiting:
                    await self._post(session, self._waiting.popleft(), tries=1)
                if self._final is not None:
                    await self._post(session, self._final, tries=FINAL_TRIES)
                    return

    async def _post(self, session: aiohttp.ClientSession, body: dict[str, Any], tries: int) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(RETRY_AFTER_S[min(attempt, len(RETRY_AFTER_S)) - 1])
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self._secret, data, int(self._clock())),
            }
            try:
                async with session.post(self.url, data=data, headers=headers, allow_redirects=False) as response:
                    if 200 <= response.status < 300:
                        self.posted += 1
                        return
                    problem = f"HTTP {response.status}"
                    retry = response.status in (408, 429) or response.status >= 500
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem, retry = scrub_urls(str(exc) or type(exc).__name__), True
            if not retry:
                break
        self.failed += 1
        # The first failure and the final state's: a dead receiver must not flood the log.
        if not self._warned or body is self._final:
            log.warning("progress webhook %s for job %s: %s update not delivered: %s",
                        redact(self.url), self._job_id, body["status"], problem)  # fmt: skip
            self._warned = True
