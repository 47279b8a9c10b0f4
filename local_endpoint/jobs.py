"""The local endpoint's jobs: their states and every move between them, apart from HTTP.

Contract: `JobBoard` holds the jobs and the queue, and is the only place a job changes
state. RunPod's rules, as `server.py`'s docstring states them: IN_QUEUE -> IN_PROGRESS
(`take`, by a worker's long poll) -> COMPLETED or FAILED (`report`), or CANCELLED
(`cancel`), TIMED_OUT (the execution timeout, from the take), dropped past its TTL
(from submission; a running one is stopped); FAILED and TIMED_OUT may be `retry`-ed; an
ended job is kept for `result_retention_s` (by how it was submitted), then forgotten.
Stops a worker must learn (cancel, timeout, TTL) queue up for `stops`. Each final
state is POSTed to the job's webhook, retried as RunPod does. Waiters (long polls,
/runsync, /status-sync) are woken through one condition; `close_long_polls` answers
them all when the endpoint stops. The HTTP handlers (`server.py`) only parse requests,
call these, and shape answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from comfy_worker.core.contract import JobState

log = logging.getLogger("local_endpoint")

Route = Literal["run", "runsync"]
"""How a job was submitted, which sets how long its result is kept."""
RESULT_RETENTION_S: dict[Route, float] = {"run": 30 * 60.0, "runsync": 60.0}
WEBHOOK_ATTEMPTS = 3
WEBHOOK_RETRY_DELAY_S = 10.0
WEBHOOK_TIMEOUT_S = 10.0


@dataclass
class Job:
    id: str
    input: Any
    execution_timeout_ms: int
    ttl_ms: int
    submitted_by: Route
    webhook: str | None = None
    status: str = JobState.IN_QUEUE
    created_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: str | None = None
    worker_id: str | None = None
    stream: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started_at is not None:
            body["delayTime"] = round((self.started_at - self.created_at) * 1000)
            if self.finished_at is not None:
                body["executionTime"] = round((self.finished_at - self.started_at) * 1000)
            body["workerId"] = self.worker_id
        if self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body

    def schedule(self, name: str, delay_s: float, callback: Callable[[], None]) -> None:
        """Run callback after delay_s, replacing this job's timer of the same name."""
        self.cancel_timer(name)
        self.timers[name] = asyncio.get_running_loop().call_later(delay_s, callback)

    def cancel_timer(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()


class JobBoard:
    def __init__(
        self,
        webhook_retry_delay_s: float = WEBHOOK_RETRY_DELAY_S,
        result_retention_s: dict[Route, float] | None = None,
    ):
        self.webhook_retry_delay_s = webhook_retry_delay_s
        self.result_retention_s = result_retention_s or RESULT_RETENTION_S
        self.jobs: dict[str, Job] = {}
        self.queue: list[str] = []
        self.stop_requests: list[str] = []
        self.refresh_requests = 0
        self.retried = 0
        self.closing = False  # shutting down: long polls answer at once, no job is handed out
        self.on_refresh: Callable[[], None] = lambda: None  # a result asked to replace the worker
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()  # webhooks and notifications, kept until done
        self._http: aiohttp.ClientSession | None = None

    # -- client side --------------------------------------------------------------

    async def submit(
        self, job_input: Any, execution_timeout_ms: int, ttl_ms: int, submitted_by: Route, webhook: str | None
    ) -> Job:
        job = Job(
            id=f"local-{uuid.uuid4()}",
            input=job_input,
            execution_timeout_ms=execution_timeout_ms,
            ttl_ms=ttl_ms,
            submitted_by=submitted_by,
            webhook=webhook,
        )
        self.jobs[job.id] = job
        self.queue.append(job.id)
        job.schedule("ttl", job.ttl_ms / 1000, lambda: self._expire(job))
        log.info("job %s queued", job.id)
        await self._notify()
        return job

    async def cancel(self, job: Job) -> None:
        if job.status == JobState.IN_QUEUE:
            self.queue.remove(job.id)
        if job.status in (JobState.IN_QUEUE, JobState.IN_PROGRESS):
            self._finish(job, JobState.CANCELLED)
            log.info("job %s cancelled", job.id)
            await self._notify()

    async def retry(self, job: Job) -> None:
        """A FAILED or TIMED_OUT job back in the queue (the caller checked RETRYABLE_STATES)."""
        job.cancel_timer("retention")
        job.status, job.output, job.error, job.stream = JobState.IN_QUEUE, None, None, []
        job.created_at, job.started_at, job.finished_at, job.worker_id = time.monotonic(), None, None, None
        job.done = asyncio.Event()
        self.queue.append(job.id)
        self.retried += 1
        log.info("job %s queued again (retry)", job.id)
        await self._notify()

    async def purge(self) -> int:
        removed = len(self.queue)
        for job_id in self.queue:
            self._finish(self.jobs[job_id], JobState.CANCELLED)
        self.queue.clear()
        await self._notify()
        return removed

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(JobState, 0)
        for job in self.jobs.values():
            counts[job.status] += 1
        return counts

    # -- worker side --------------------------------------------------------------

    async def take(self, worker_id: str, long_poll_s: float, most: int = 1) -> list[Job]:
        """Up to `most` queued jobs, now IN_PROGRESS: as many as are queued once one is, or
        none after the long poll (or when stopping)."""
        if not await self._wait_for(lambda: bool(self.queue) or self.closing, long_poll_s) or self.closing:
            return []
        return [self._take_next(worker_id) for _ in range(min(most, len(self.queue)))]

    def _take_next(self, worker_id: str) -> Job:
        job = self.jobs[self.queue.pop(0)]
        job.status, job.started_at, job.worker_id = JobState.IN_PROGRESS, time.monotonic(), worker_id
        job.schedule("execution", job.execution_timeout_ms / 1000, lambda: self._time_out(job))
        log.info("job %s taken by worker %s", job.id, job.worker_id)
        return job

    async def report(self, job: Job, body: dict[str, Any]) -> str | None:
        """A worker's job-done post: progress while IN_PROGRESS, else the result. Returns
        why it was ignored (the job is no longer running), or None."""
        if job.status != JobState.IN_PROGRESS:
            return f"job is {job.status}"
        if body.get("status") == JobState.IN_PROGRESS:
            job.output = body.get("output")
            return None
        if body.get("stopPod"):
            self.refresh_requests += 1
            log.warning("worker %s asked to be replaced (refresh_worker)", job.worker_id)
            self.on_refresh()
        job.output = body.get("output")
        job.error = body.get("error")
        self._finish(job, JobState.FAILED if job.error else JobState.COMPLETED)
        log.info("job %s %s", job.id, job.status)
        await self._notify()
        return None

    async def stops(self, long_poll_s: float) -> list[str]:
        """The jobs the worker must stop, once there are any (empty after the long poll)."""
        await self._wait_for(lambda: bool(self.stop_requests) or self.closing, long_poll_s)
        job_ids, self.stop_requests = self.stop_requests, []
        return job_ids

    async def close_long_polls(self) -> None:
        """Answer the worker's pending long polls now and every later one at once, so a
        stopping worker (whose SDK waits for its job-take to return) exits in moments."""
        self.closing = True
        await self._notify()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._http is not None:
            await self._http.close()

    async def wait_until_done(self, job: Job, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(job.done.wait(), timeout_s)
        except TimeoutError:
            pass

    # -- state changes -------------------------------------------------------------

    def _finish(self, job: Job, status: str) -> None:
        was_running = job.status == JobState.IN_PROGRESS
        job.status, job.finished_at = status, time.monotonic()
        job.cancel_timer("execution")
        if was_running and status in (JobState.CANCELLED, JobState.TIMED_OUT):
            job.output = None
            self.stop_requests.append(job.id)  # the worker learns it through job-stop
        job.done.set()
        retention_s = self.result_retention_s[job.submitted_by]
        job.schedule("retention", retention_s, lambda: self._forget(job, "its result expired"))
        if job.webhook:
            self._spawn(self._deliver_webhook(job.webhook, job.view()))

    def _time_out(self, job: Job) -> None:
        if job.status == JobState.IN_PROGRESS:
            log.info("job %s passed its execution timeout of %d ms", job.id, job.execution_timeout_ms)
            self._finish(job, JobState.TIMED_OUT)
            self._spawn(self._notify())

    def _expire(self, job: Job) -> None:
        """The job's TTL has passed: drop it wherever it is, stopping it if it runs."""
        if job.status == JobState.IN_QUEUE:
            self.queue.remove(job.id)
        elif job.status == JobState.IN_PROGRESS:
            self.stop_requests.append(job.id)
        self._forget(job, f"its ttl of {job.ttl_ms} ms passed")
        self._spawn(self._notify())

    def _forget(self, job: Job, why: str) -> None:
        for name in list(job.timers):
            job.cancel_timer(name)
        job.done.set()  # /runsync and /status-sync waiters return
        if self.jobs.pop(job.id, None) is not None:
            log.info("job %s removed: %s", job.id, why)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run coroutine as a task that is kept (not garbage-collected mid-way) and
        cancelled when the board closes."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(predicate)
            return True
        except TimeoutError:
            return False

    async def _deliver_webhook(self, url: str, body: dict[str, Any]) -> None:
        """POST the final status; anything but 200 is tried again, as RunPod does."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S))
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                async with self._http.post(url, json=body) as response:
                    if response.status == 200:
                        log.info("webhook for job %s delivered", body["id"])
                        return
                    why = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as error:
                why = f"{type(error).__name__}: {error}"
            log.warning("webhook for job %s, attempt %d of %d: %s", body["id"], attempt, WEBHOOK_ATTEMPTS, why)
            if attempt < WEBHOOK_ATTEMPTS:
                await asyncio.sleep(self.webhook_retry_delay_s)
