"""The endpoint client, async at its core: run a job, follow it, cancel it, save its outputs.

One code path for RunPod and for the local endpoint: only the base URL differs
(`https://api.runpod.ai/v2/<endpoint id>` or `http://127.0.0.1:8000/v2/local`).
`AsyncEndpoint` is for event loops (the MCP server, the editor's bridge in ComfyUI);
`EndpointClient` (`blocking.py`) runs it for scripts and the command line.

A request that would pass RunPod's size limit has its inline inputs uploaded to the
client's `bucket` and sent as URLs (`uploads.fit_request`); without one, `run` raises
`RequestTooLarge` before sending. Every failure to reach or be answered by the endpoint
is an `EndpointError`: `EndpointUnreachable` (no answer; never the key), or
`EndpointAnswered` with the HTTP status (`key_refused` for 401/403). Every submit carries
an `idempotency_key` (the caller's, else a new one) and is sent again when its answer is
lost, so a job runs once where the endpoint keeps keys. A job that ends
in a state other than COMPLETED raises `JobFailed` from `wait`. Its outputs are saved
by `files.save_outputs`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from .contract import FINAL_STATES, JobState
from .uploads import Moved, UploadBucket, fit_request

log = logging.getLogger("comfy_worker_client")

RUNPOD_API = "https://api.runpod.ai/v2"
RUNSYNC_WAIT_MS = 90_000  # RunPod holds /runsync at most this long before answering IN_PROGRESS
POLL_FAILURES_TOLERATED = 5  # consecutive failed polls (no answer, HTTP 5xx or 429) before `wait` gives up
SUBMIT_ATTEMPTS = 4  # a submit not answered is sent again, with the same idempotency key

Status = dict[str, Any]
"""An endpoint's /status body: `id`, `status` (a `JobState`), `output` or `error`."""


class EndpointError(Exception):
    """The endpoint could not be reached, or answered with an error."""


class EndpointUnreachable(EndpointError):
    """No answer from the endpoint (refused, timed out, no such host)."""


class EndpointAnswered(EndpointError):
    """The endpoint answered with an HTTP error; `status` is its code, `error` its message."""

    def __init__(self, message: str, status: int, error: str):
        super().__init__(message)
        self.status = status
        self.error = error

    @property
    def key_refused(self) -> bool:
        return self.status in (401, 403)


class JobFailed(Exception):
    """The job ended in a state other than COMPLETED; `status` is its last /status body."""

    def __init__(self, status: Status):
        self.status = status
        output = status.get("output")
        if isinstance(output, dict) and output.get("error"):  # the worker's own words: node and cause
            error = f"{output.get('error_type', 'error')}: {output['error']}"
        else:
            error = status.get("error") or status["status"]
        super().__init__(f"job {status.get('id')} {status['status']}: {error}")


def is_passing(exc: EndpointError) -> bool:
    """A failure worth trying again: no answer, HTTP 5xx or 429."""
    return not isinstance(exc, EndpointAnswered) or exc.status >= 500 or exc.status == 429


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def with_idempotency_key(job_input: dict[str, Any]) -> dict[str, Any]:
    """A job input that runs a workflow, with an `idempotency_key`: its own, else a new one, made
    once per logical submit so that every attempt of it sends the same. A question (`list`,
    `result_of`, `validate_only`) runs nothing and needs none; a `replay` runs a workflow."""
    runs = any(field in job_input for field in ("workflow", "workflow_name", "replay"))
    runs = runs and not job_input.get("validate_only")
    if not runs or "idempotency_key" in job_input:
        return job_input
    return {**job_input, "idempotency_key": new_idempotency_key()}


class AsyncEndpoint:
    """One endpoint, over one aiohttp session (made on first use, in the running loop)."""

    submit_retry_s = 1.0  # the pause before a submit's second attempt, doubling after

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        bucket: UploadBucket | None = None,
        request_timeout_s: float = 30,
    ):
        """`bucket` takes inputs too large for a request (default: none, such a job is refused)."""
        self.base_url = base_url.rstrip("/")
        self.bucket = bucket
        self.api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, connect=min(10, request_timeout_s))
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_runpod(cls, endpoint_id: str, api_key: str, bucket: UploadBucket | None = None) -> AsyncEndpoint:
        return cls(f"{RUNPOD_API}/{endpoint_id}", api_key, bucket)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def call(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> dict[str, Any]:
        """One request; its JSON answer, or an `EndpointError` naming the endpoint and what happened."""
        # (aiohttp reads timeout=None as "no limit at all", not as the session's.)
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self._timeout
        try:
            async with self.session().request(method, f"{self.base_url}{path}", json=body, timeout=timeout) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EndpointUnreachable(
                f"the endpoint at {self.base_url} is unreachable ({type(exc).__name__})"
            ) from None
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if response.status >= 400:
            error = str(answer.get("error") if isinstance(answer, dict) and answer.get("error") else text[:500])
            what = "refused the API key" if response.status in (401, 403) else "answered"
            message = f"{method} {path}: the endpoint at {self.base_url} {what} (HTTP {response.status}): {error}"
            raise EndpointAnswered(message, response.status, error)
        if not isinstance(answer, dict):
            raise EndpointAnswered(f"{method} {path}: not a JSON object: {text[:200]!r}", response.status, text[:200])
        return answer

    async def run(self, job_input: dict[str, Any], execution_timeout_ms: int | None = None) -> str:
        """Submits the job (POST /run) once, even if its answer is lost (`submit`); its id."""
        job_id, _ = await self.run_fitted(job_input, execution_timeout_ms)
        return job_id

    async def run_fitted(
        self, job_input: dict[str, Any], execution_timeout_ms: int | None = None
    ) -> tuple[str, list[Moved]]:
        """As `run`, and which inline inputs went through the bucket to fit RunPod's limit."""
        body, moved = await self._fitted(with_idempotency_key(job_input), "/run", execution_timeout_ms)
        return str((await self.submit("/run", body))["id"]), moved

    async def runsync(self, job_input: dict[str, Any], wait_ms: int = RUNSYNC_WAIT_MS) -> Status:
        """Runs the job and waits for it (POST /runsync); its status, IN_PROGRESS if it outlasts `wait_ms`."""
        body, _ = await self._fitted(with_idempotency_key(job_input), "/runsync", None)
        return await self.submit(f"/runsync?wait={wait_ms}", body, timeout_s=wait_ms / 1000 + 30)

    async def submit(self, path: str, body: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """POSTs a job, sending it again when no answer came (or a passing error, `is_passing`),
        up to SUBMIT_ATTEMPTS times: its `idempotency_key` makes the worker run it once (where the
        endpoint keeps keys: a bucket or a network volume; docs/job-api.md, Submit once)."""
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                return await self.call("POST", path, body, timeout_s)
            except EndpointError as exc:
                if not is_passing(exc) or attempt == SUBMIT_ATTEMPTS:
                    raise
                log.warning("the submit was not answered (%s); sending it again with its idempotency key", exc)
                await asyncio.sleep(self.submit_retry_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def status(self, job_id: str) -> Status:
        return await self.call("GET", f"/status/{job_id}")

    async def cancel(self, job_id: str) -> Status:
        return await self.call("POST", f"/cancel/{job_id}")

    async def wait(
        self,
        job_id: str,
        on_status: Callable[[Status], Awaitable[None] | None] = lambda status: None,
        poll_interval_s: float = 0.5,
        raise_failed: bool = True,
    ) -> Status:
        """Polls /status until the job ends; each status goes to `on_status` (a function or a
        coroutine function). The final status if COMPLETED, else `JobFailed` (or, with
        `raise_failed=False`, the final status whatever it is). A poll that fails for a
        passing reason (no answer, HTTP 5xx or 429) is tried again, backing off, up to
        POLL_FAILURES_TOLERATED times in a row: the job runs on whether or not it is watched."""
        failures = 0
        while True:
            try:
                status = await self.status(job_id)
            except EndpointError as exc:
                failures += 1
                if not is_passing(exc) or failures > POLL_FAILURES_TOLERATED:
                    raise
                log.warning("status of job %s not read (%s); trying again", job_id, exc)
                await asyncio.sleep(poll_interval_s * 2**failures)
                continue
            failures = 0
            shown = on_status(status)
            if shown is not None:
                await shown
            if status["status"] in FINAL_STATES:
                if status["status"] != JobState.COMPLETED and raise_failed:
                    raise JobFailed(status)
                return status
            await asyncio.sleep(poll_interval_s)

    async def _fitted(
        self, job_input: dict[str, Any], path: str, execution_timeout_ms: int | None
    ) -> tuple[dict[str, Any], list[Moved]]:
        body: dict[str, Any] = {"input": job_input}
        if execution_timeout_ms:
            body["policy"] = {"executionTimeout": execution_timeout_ms}
        # Encoding and uploading megabytes: off the event loop. RequestTooLarge if it cannot fit.
        fitted, moved = await asyncio.to_thread(fit_request, body, path, self.bucket)
        for move in moved:
            log.info("%s", move.notice)
        return fitted, moved
