"""A RunPod endpoint on localhost: the client API your app calls, the worker API
the unmodified RunPod SDK (`runpod.serverless.start`) talks to in production mode,
and a page to watch jobs.

Client side, under /v2/{endpoint_id} (RunPod's paths, JSON shapes and rules):

    POST /run, /runsync[?wait=ms]  {"input", "webhook"?, "policy"?: {"executionTimeout", "ttl"}} -> {"id", "status"}
    GET|POST /status/{id}          {"id", "status", "delayTime", "executionTime", "output"?, "error"?, "workerId"?}
    GET|POST /status-sync/{id}[?wait=ms]  the same, once the job has ended or `wait` has passed
    GET|POST /stream/{id}          {"id", "status", "stream": [{"output": ...}]}: chunks a generator
                                   handler yielded, since the last call
    POST /cancel/{id}              {"id", "status"}
    POST /retry/{id}               a FAILED or TIMED_OUT job back in the queue: {"id", "status": "IN_QUEUE"}
    GET /health                    {"jobs": {...}, "workers": {...}}
    POST /purge-queue              {"removed": n, "status": "completed"}

States: IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT. While a
job is IN_PROGRESS, `output` is the last progress update the worker sent. As on
RunPod: `wait` is clamped to 1-300 s (default 90 s); a job past its `ttl` (default
24 h, from submission) is dropped, stopped if running; an ended job's result is
kept 30 min (/run) or 1 min (/runsync), then /status answers 404; `webhook` gets
the final status POSTed, retried twice 10 s apart unless it answers 200. With an
API key set, client requests need `Authorization: Bearer <key>` (or the bare key,
as RunPod also takes). Malformed requests get 400 with the reason, never a 500.
CORS is open, so a page served elsewhere can call it.

Worker side, under /worker (the URLs the SDK reads from RUNPOD_WEBHOOK_*; see
`worker_environment`), always authenticated with the worker's own key (the SDK
sends RUNPOD_AI_API_KEY; a random one unless given), so nobody else can take a job
or post a result: job-take (long poll, one job at a time), job-done (final
results and progress), job-stream, job-stop (long poll: {"jobsToStop": [...]},
how cancels, execution timeouts and TTLs reach the worker), ping. A result with
`stopPod` (the worker's refresh_worker) is recorded and reported by /health,
where RunPod would replace the worker.

The page (`page/`, served at `/`) needs no key to load: it holds none. It asks
the endpoint, or a RunPod endpoint, with the key typed into it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger("local_endpoint")

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
RETRYABLE_STATES = {"FAILED", "TIMED_OUT"}
DEFAULT_EXECUTION_TIMEOUT_MS = 600_000  # RunPod's defaults and limits
DEFAULT_TTL_MS = 24 * 3600 * 1000
SYNC_WAIT_MS = (1_000, 90_000, 300_000)  # min, default, max of ?wait=
RESULT_RETENTION_S = {"run": 30 * 60.0, "runsync": 60.0}
WEBHOOK_ATTEMPTS = 3
WEBHOOK_RETRY_DELAY_S = 10.0
WEBHOOK_TIMEOUT_S = 10.0
LONG_POLL_S = 10.0
PAGE_DIR = Path(__file__).parent / "page"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
}


@dataclass
class Job:
    id: str
    input: Any
    execution_timeout_ms: int
    ttl_ms: int
    submitted_by: str  # "run" or "runsync": how long the result is kept
    webhook: str | None = None
    status: str = "IN_QUEUE"
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


class LocalEndpoint:
    def __init__(
        self,
        endpoint_id: str = "local",
        api_key: str | None = None,
        long_poll_s: float = LONG_POLL_S,
        worker_key: str | None = None,
        webhook_retry_delay_s: float = WEBHOOK_RETRY_DELAY_S,
        result_retention_s: dict[str, float] | None = None,
    ):
        self.endpoint_id = endpoint_id
        self.api_key = api_key
        self.worker_key = worker_key or secrets.token_urlsafe(24)
        self.long_poll_s = long_poll_s
        self.webhook_retry_delay_s = webhook_retry_delay_s
        self.result_retention_s = result_retention_s or RESULT_RETENTION_S
        self.jobs: dict[str, Job] = {}
        self.queue: list[str] = []
        self.stop_requests: list[str] = []
        self.refresh_requests = 0
        self.retried = 0
        self.workers_expected = 0  # set when this process starts the worker: /health's "initializing"
        self.last_ping: float | None = None
        self.on_refresh = lambda: None  # called when a result asks to replace the worker
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()  # webhooks and notifications, kept until done
        self.worker_exit: str | None = None  # why the worker last exited, until it pings again
        self.closing = False  # shutting down: long polls answer at once, no job is handed out
        self._http: aiohttp.ClientSession | None = None

    # -- app -------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._cors, self._json_errors, self._auth], client_max_size=64 * 1024 * 1024)
        client = f"/v2/{self.endpoint_id}"
        app.add_routes(
            [
                web.post(f"{client}/run", self.run),
                web.post(f"{client}/runsync", self.runsync),
                web.route("*", f"{client}/status/{{job_id}}", self.status),
                web.route("*", f"{client}/status-sync/{{job_id}}", self.status_sync),
                web.route("*", f"{client}/stream/{{job_id}}", self.stream),
                web.post(f"{client}/cancel/{{job_id}}", self.cancel),
                web.post(f"{client}/retry/{{job_id}}", self.retry),
                web.get(f"{client}/health", self.health),
                web.post(f"{client}/purge-queue", self.purge_queue),
                web.get("/worker/job-take/{worker_id}", self.job_take),
                web.post("/worker/job-done/{worker_id}/{job_id}", self.job_done),
                web.post("/worker/job-stream/{worker_id}/{job_id}", self.job_stream),
                web.get("/worker/job-stop/{worker_id}", self.job_stop),
                web.get("/worker/ping/{worker_id}", self.ping),
                web.get("/", self.page),
                web.get("/page-config.json", self.page_config),
                web.static("/page", PAGE_DIR),
            ]
        )
        app.on_cleanup.append(self._close)
        return app

    @web.middleware
    async def _cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v2/"):
            return await handler(request)
        if request.method == "OPTIONS":  # a browser's preflight: no key is sent with it
            return web.Response(status=204, headers=CORS_HEADERS)
        try:
            response = await handler(request)
        except web.HTTPException as error:
            error.headers.update(CORS_HEADERS)
            raise
        response.headers.update(CORS_HEADERS)
        return response

    @web.middleware
    async def _json_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Under /v2/, a path that matches no route (a wrong endpoint id, say) answers JSON, as RunPod does."""
        try:
            return await handler(request)
        except web.HTTPNotFound as error:
            if not request.path.startswith("/v2/") or error.content_type == "application/json":
                raise
            endpoint_id = request.path.split("/")[2]
            message = (
                f"endpoint '{endpoint_id}' does not exist here (this one is '{self.endpoint_id}')"
                if endpoint_id != self.endpoint_id
                else f"no such operation: {request.method} {request.path}"
            )
            raise web.HTTPNotFound(text=json.dumps({"error": message}), content_type="application/json") from None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/worker/"):
            expected: str | None = self.worker_key
        else:
            expected = self.api_key if request.path.startswith("/v2/") else None
        if expected is not None and not key_matches(request.headers.get("Authorization", ""), expected):
            return web.json_response({"error": "Unauthorized: missing or wrong API key"}, status=401)
        return await handler(request)

    async def _close(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._http is not None:
            await self._http.close()

    async def close_long_polls(self) -> None:
        """Answer the worker's pending long polls now and every later one at once, so a
        stopping worker (whose SDK waits for its job-take to return) exits in moments."""
        self.closing = True
        await self._notify()

    def note_worker_exit(self, reason: str) -> None:
        """The worker process exited (why, in a line): /health reports it until a worker pings again."""
        self.worker_exit = reason
        self.last_ping = None

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

    def _job(self, request: web.Request) -> Job:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "request does not exist"}), content_type="application/json"
            )
        return job

    # -- client API ------------------------------------------------------------

    async def _submit(self, request: web.Request, submitted_by: str) -> Job:
        body = await json_body(request)
        if not isinstance(body, dict) or "input" not in body:
            raise bad_request("'input' is required")
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise bad_request("'policy' must be an object")
        webhook = body.get("webhook")
        if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
            raise bad_request("'webhook' must be an http:// or https:// URL")
        job = Job(
            id=f"local-{uuid.uuid4()}",
            input=body["input"],
            execution_timeout_ms=milliseconds(policy, "executionTimeout", DEFAULT_EXECUTION_TIMEOUT_MS),
            ttl_ms=milliseconds(policy, "ttl", DEFAULT_TTL_MS),
            submitted_by=submitted_by,
            webhook=webhook,
        )
        self.jobs[job.id] = job
        self.queue.append(job.id)
        job.schedule("ttl", job.ttl_ms / 1000, lambda: self._expire(job))
        log.info("job %s queued", job.id)
        await self._notify()
        return job

    async def run(self, request: web.Request) -> web.Response:
        job = await self._submit(request, "run")
        return web.json_response({"id": job.id, "status": job.status})

    async def runsync(self, request: web.Request) -> web.Response:
        job = await self._submit(request, "runsync")
        await self._wait_until_done(job, request)
        return web.json_response(job.view())

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self._job(request).view())

    async def status_sync(self, request: web.Request) -> web.Response:
        job = self._job(request)
        await self._wait_until_done(job, request)
        return web.json_response(job.view())

    async def _wait_until_done(self, job: Job, request: web.Request) -> None:
        try:
            wait_ms = int(request.query.get("wait", SYNC_WAIT_MS[1]))
        except ValueError:
            raise bad_request("'wait' must be a whole number of milliseconds") from None
        wait_ms = min(max(wait_ms, SYNC_WAIT_MS[0]), SYNC_WAIT_MS[2])
        try:
            await asyncio.wait_for(job.done.wait(), wait_ms / 1000)
        except TimeoutError:
            pass

    async def stream(self, request: web.Request) -> web.Response:
        job = self._job(request)
        chunks, job.stream = job.stream, []
        return web.json_response({"id": job.id, "status": job.status, "stream": chunks})

    async def cancel(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job.status == "IN_QUEUE":
            self.queue.remove(job.id)
        if job.status in ("IN_QUEUE", "IN_PROGRESS"):
            self._finish(job, "CANCELLED")
            log.info("job %s cancelled", job.id)
            await self._notify()
        return web.json_response({"id": job.id, "status": job.status})

    async def retry(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job.status not in RETRYABLE_STATES:
            raise bad_request(f"job {job.id} is {job.status}: only FAILED or TIMED_OUT jobs can be retried")
        job.cancel_timer("retention")
        job.status, job.output, job.error, job.stream = "IN_QUEUE", None, None, []
        job.created_at, job.started_at, job.finished_at, job.worker_id = time.monotonic(), None, None, None
        job.done = asyncio.Event()
        self.queue.append(job.id)
        self.retried += 1
        log.info("job %s queued again (retry)", job.id)
        await self._notify()
        return web.json_response({"id": job.id, "status": job.status})

    async def health(self, request: web.Request) -> web.Response:
        counts = {state: 0 for state in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")}
        for job in self.jobs.values():
            counts[job.status] += 1
        ready = int(self.last_ping is not None and time.monotonic() - self.last_ping < 30)
        return web.json_response(
            {
                "jobs": {
                    "inQueue": counts["IN_QUEUE"],
                    "inProgress": counts["IN_PROGRESS"],
                    "completed": counts["COMPLETED"],
                    "failed": counts["FAILED"],
                    "cancelled": counts["CANCELLED"],
                    "timedOut": counts["TIMED_OUT"],
                    "retried": self.retried,
                },
                "workers": {
                    "idle": int(ready and not counts["IN_PROGRESS"]),
                    "initializing": max(self.workers_expected - ready, 0),
                    "ready": ready,
                    "running": counts["IN_PROGRESS"],
                    "throttled": 0,
                    "unhealthy": int(self.worker_exit is not None and not ready),
                    "refreshRequested": self.refresh_requests,
                },
                **({"lastWorkerExit": self.worker_exit} if self.worker_exit is not None and not ready else {}),
            }
        )

    async def purge_queue(self, request: web.Request) -> web.Response:
        removed = len(self.queue)
        for job_id in self.queue:
            self._finish(self.jobs[job_id], "CANCELLED")
        self.queue.clear()
        await self._notify()
        return web.json_response({"removed": removed, "status": "completed"})

    # -- the page ------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE_DIR / "index.html")

    async def page_config(self, request: web.Request) -> web.Response:
        return web.json_response({"endpointId": self.endpoint_id, "keyRequired": self.api_key is not None})

    # -- worker API --------------------------------------------------------------

    async def job_take(self, request: web.Request) -> web.Response:
        if not await self._wait_for(lambda: bool(self.queue) or self.closing, self.long_poll_s) or self.closing:
            return web.Response(status=204)
        job = self.jobs[self.queue.pop(0)]
        job.status, job.started_at = "IN_PROGRESS", time.monotonic()
        job.worker_id = request.match_info["worker_id"]
        job.schedule("execution", job.execution_timeout_ms / 1000, lambda: self._time_out(job))
        log.info("job %s taken by worker %s", job.id, job.worker_id)
        return web.json_response({"id": job.id, "input": job.input})

    async def job_done(self, request: web.Request) -> web.Response:
        job = self._job(request)
        body = await json_body(request)  # the SDK posts JSON with a form content type
        if not isinstance(body, dict):
            raise bad_request("the result must be a JSON object")
        if job.status != "IN_PROGRESS":
            return web.json_response({"ignored": f"job is {job.status}"})
        if body.get("status") == "IN_PROGRESS":
            job.output = body.get("output")
            return web.json_response({})
        if body.get("stopPod"):
            self.refresh_requests += 1
            log.warning("worker %s asked to be replaced (refresh_worker)", job.worker_id)
            self.on_refresh()
        job.output = body.get("output")
        job.error = body.get("error")
        self._finish(job, "FAILED" if job.error else "COMPLETED")
        log.info("job %s %s", job.id, job.status)
        await self._notify()
        return web.json_response({})

    async def job_stream(self, request: web.Request) -> web.Response:
        job = self._job(request)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise bad_request("the stream chunk must be a JSON object")
        job.stream.append({"output": body.get("output")})
        return web.json_response({})

    async def job_stop(self, request: web.Request) -> web.Response:
        if not await self._wait_for(lambda: bool(self.stop_requests) or self.closing, self.long_poll_s):
            return web.Response(status=204)
        if not self.stop_requests:
            return web.Response(status=204)
        job_ids, self.stop_requests = self.stop_requests, []
        return web.json_response({"jobsToStop": job_ids})

    async def ping(self, request: web.Request) -> web.Response:
        self.last_ping = time.monotonic()
        self.worker_exit = None
        return web.json_response({})

    # -- state changes -------------------------------------------------------------

    def _finish(self, job: Job, status: str) -> None:
        was_running = job.status == "IN_PROGRESS"
        job.status, job.finished_at = status, time.monotonic()
        job.cancel_timer("execution")
        if was_running and status in ("CANCELLED", "TIMED_OUT"):
            job.output = None
            self.stop_requests.append(job.id)  # the worker learns it through job-stop
        job.done.set()
        retention_s = self.result_retention_s[job.submitted_by]
        job.schedule("retention", retention_s, lambda: self._forget(job, "its result expired"))
        if job.webhook:
            self._spawn(self._deliver_webhook(job.webhook, job.view()))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run coroutine as a task that is kept (not garbage-collected mid-way) and
        cancelled when the app closes."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _time_out(self, job: Job) -> None:
        if job.status == "IN_PROGRESS":
            log.info("job %s passed its execution timeout of %d ms", job.id, job.execution_timeout_ms)
            self._finish(job, "TIMED_OUT")
            self._spawn(self._notify())

    def _expire(self, job: Job) -> None:
        """The job's TTL has passed: drop it wherever it is, stopping it if it runs."""
        if job.status == "IN_QUEUE":
            self.queue.remove(job.id)
        elif job.status == "IN_PROGRESS":
            self.stop_requests.append(job.id)
        self._forget(job, f"its ttl of {job.ttl_ms} ms passed")
        self._spawn(self._notify())

    def _forget(self, job: Job, why: str) -> None:
        for name in list(job.timers):
            job.cancel_timer(name)
        job.done.set()  # /runsync and /status-sync waiters return
        if self.jobs.pop(job.id, None) is not None:
            log.info("job %s removed: %s", job.id, why)

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


def milliseconds(policy: dict[str, Any], name: str, default: int) -> int:
    value = policy.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise bad_request(f"'policy.{name}' must be a positive number of milliseconds")
    return int(value)


def key_matches(header: str, expected: str) -> bool:
    """`Bearer <key>` (any case) or the bare key, compared in constant time."""
    scheme, _, rest = header.strip().partition(" ")
    given = rest.strip() if scheme.lower() == "bearer" else header.strip()
    return hmac.compare_digest(given.encode(), expected.encode())


async def json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise bad_request("the body is not valid JSON (UTF-8)") from None
    except RecursionError:
        raise bad_request("the body is JSON nested too deeply to read") from None


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def worker_environment(base_url: str, api_key: str) -> dict[str, str]:
    """The environment that points the RunPod SDK's production mode at this server."""
    return {
        "RUNPOD_WEBHOOK_GET_JOB": f"{base_url}/worker/job-take/$ID?gpu=local",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base_url}/worker/job-done/$RUNPOD_POD_ID/$ID?gpu=local",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{base_url}/worker/job-stream/$RUNPOD_POD_ID/$ID?gpu=local",
        "RUNPOD_WEBHOOK_PING": f"{base_url}/worker/ping/$RUNPOD_POD_ID?gpu=local",
        "RUNPOD_AI_API_KEY": api_key,
        "RUNPOD_POD_ID": "local-worker",
        # The SDK's start-up checks include reaching the internet (8.8.8.8:53); a local
        # endpoint must work offline. RunPod runs them on its own machines.
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
    }
