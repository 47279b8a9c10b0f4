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
as RunPod also takes). Malformed requests get 400 with the reason, never a 500; a body
over RunPod's size limit (10 MB on /run, 20 MB on /runsync: `client.uploads`) gets 413.
CORS is open, so a page served elsewhere can call it.

Worker side, under /worker (the URLs the SDK reads from RUNPOD_WEBHOOK_*; see
`worker_environment`), always authenticated with the worker's own key (the SDK
sends RUNPOD_AI_API_KEY; a random one unless given), so nobody else can take a job
or post a result: job-take (long poll, one job) and job-take-batch (up to
`batch_size` jobs, when the worker runs several at once), job-done (final
results and progress), job-stream, job-stop (long poll: {"jobsToStop": [...]},
how cancels, execution timeouts and TTLs reach the worker), ping. A result with
`stopPod` (the worker's refresh_worker) is recorded and reported by /health,
where RunPod would replace the worker.

The job state machine (every state and move, the TTL and retention timers, the
webhooks) is `jobs.JobBoard`; this module parses requests, authenticates, and shapes
the answers. The page (`page/`, served at `/`) needs no key to load: it holds none. It asks
the endpoint, or a RunPod endpoint, with the key typed into it; its inputs too large
for a request go to this endpoint's bucket, when it has one, through `POST /page-upload`.
The API page (`/api`, `page/api.html`) shows the endpoint's OpenAPI document
(`GET /v2/{endpoint_id}/openapi.json`) with Swagger UI (its static build, served at
/swagger-ui/ from the pinned swagger-ui-py package), "Try it out" included.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.util
import json
import logging
import math
import mimetypes
import secrets
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from comfy_worker.core.contract import RETRYABLE_STATES, RUNPOD_REQUEST_LIMITS, JobState
from comfy_worker.core.errors import StorageError
from comfy_worker.core.job import OutputStore

from .jobs import WEBHOOK_RETRY_DELAY_S, Job, JobBoard, Route

log = logging.getLogger("local_endpoint")

DEFAULT_EXECUTION_TIMEOUT_MS = 600_000  # RunPod's defaults and limits
DEFAULT_TTL_MS = 24 * 3600 * 1000
SYNC_WAIT_MS = (1_000, 90_000, 300_000)  # min, default, max of ?wait=
LONG_POLL_S = 10.0
PAGE_DIR = Path(__file__).parent / "page"


def _swagger_ui_dir() -> Path | None:
    """Swagger UI's static build, from the pinned swagger-ui-py package (found, not imported)."""
    spec = importlib.util.find_spec("swagger_ui")
    return Path(spec.origin).parent / "static" if spec is not None and spec.origin else None


SWAGGER_UI_DIR = _swagger_ui_dir()  # None without it: the API page then says how to install it
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
}


class LocalEndpoint:
    def __init__(
        self,
        endpoint_id: str = "local",
        api_key: str | None = None,
        long_poll_s: float = LONG_POLL_S,
        worker_key: str | None = None,
        webhook_retry_delay_s: float = WEBHOOK_RETRY_DELAY_S,
        result_retention_s: dict[Route, float] | None = None,
        upload_bucket: OutputStore | None = None,
    ):
        """`upload_bucket` takes the page's inputs too large for a request (`POST /page-upload`)."""
        self.endpoint_id = endpoint_id
        self.upload_bucket = upload_bucket
        self.api_key = api_key
        self.worker_key = worker_key or secrets.token_urlsafe(24)
        self.long_poll_s = long_poll_s
        self.board = JobBoard(webhook_retry_delay_s, result_retention_s)
        self.workers_expected = 0  # set when this process starts the worker: /health's "initializing"
        self.last_ping: float | None = None
        self.worker_exit: str | None = None  # why the worker last exited, until it pings again

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
                web.get(f"{client}/openapi.json", self.openapi),
                web.post(f"{client}/purge-queue", self.purge_queue),
                web.get("/worker/job-take/{worker_id}", self.job_take),
                web.get("/worker/job-take-batch/{worker_id}", self.job_take_batch),
                web.post("/worker/job-done/{worker_id}/{job_id}", self.job_done),
                web.post("/worker/job-stream/{worker_id}/{job_id}", self.job_stream),
                web.get("/worker/job-stop/{worker_id}", self.job_stop),
                web.get("/worker/ping/{worker_id}", self.ping),
                web.get("/", self.page),
                web.get("/page-config.json", self.page_config),
                web.post("/page-upload", self.page_upload),
                web.static("/page", PAGE_DIR),
                web.get("/api", self.api_page),
            ]
        )
        if SWAGGER_UI_DIR is not None:
            app.add_routes([web.static("/swagger-ui", SWAGGER_UI_DIR)])
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
            expected = self.api_key if request.path.startswith(("/v2/", "/page-upload")) else None
        if expected is not None and not key_matches(request.headers.get("Authorization", ""), expected):
            return web.json_response({"error": "Unauthorized: missing or wrong API key"}, status=401)
        return await handler(request)

    async def _close(self, app: web.Application) -> None:
        await self.board.close()

    async def close_long_polls(self) -> None:
        await self.board.close_long_polls()

    def note_worker_exit(self, reason: str) -> None:
        """The worker process exited (why, in a line): /health reports it until a worker pings again."""
        self.worker_exit = reason
        self.last_ping = None

    def _job(self, request: web.Request) -> Job:
        job = self.board.jobs.get(request.match_info["job_id"])
        if job is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "request does not exist"}), content_type="application/json"
            )
        return job

    # -- client API ------------------------------------------------------------

    async def _submit(self, request: web.Request, submitted_by: Route) -> Job:
        body = await json_body(request, RUNPOD_REQUEST_LIMITS[f"/{submitted_by}"])
        if not isinstance(body, dict) or "input" not in body:
            raise bad_request("'input' is required")
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise bad_request("'policy' must be an object")
        webhook = body.get("webhook")
        if webhook is not None and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
            raise bad_request("'webhook' must be an http:// or https:// URL")
        return await self.board.submit(
            body["input"],
            milliseconds(policy, "executionTimeout", DEFAULT_EXECUTION_TIMEOUT_MS),
            milliseconds(policy, "ttl", DEFAULT_TTL_MS),
            submitted_by,
            webhook,
        )

    async def run(self, request: web.Request) -> web.Response:
        job = await self._submit(request, "run")
        return web.json_response({"id": job.id, "status": job.status})

    async def runsync(self, request: web.Request) -> web.Response:
        job = await self._submit(request, "runsync")
        await self._wait_until_done(job, request)
        return web.json_response(job.view())

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self._job(request).view())

    async def openapi(self, request: web.Request) -> web.Response:
        """The endpoint's OpenAPI document, as its worker answers `{"list": "openapi"}`, for this
        endpoint's base URL (a job like any other: it waits for a worker)."""
        job = await self.board.submit(
            {"list": "openapi"}, DEFAULT_EXECUTION_TIMEOUT_MS, DEFAULT_TTL_MS, "runsync", None
        )
        await self.board.wait_until_done(job, SYNC_WAIT_MS[2] / 1000)
        if job.status != JobState.COMPLETED or not isinstance(job.output, dict) or "openapi" not in job.output:
            answer = job.view()
            return web.json_response({"error": "the worker gave no OpenAPI document", "job": answer}, status=502)
        document = job.output
        base = f"{request.scheme}://{request.host}/v2/{self.endpoint_id}"
        document["servers"] = [{"url": base, "description": "this local endpoint"}]
        return web.json_response(document)

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
        await self.board.wait_until_done(job, wait_ms / 1000)

    async def stream(self, request: web.Request) -> web.Response:
        job = self._job(request)
        chunks, job.stream = job.stream, []
        return web.json_response({"id": job.id, "status": job.status, "stream": chunks})

    async def cancel(self, request: web.Request) -> web.Response:
        job = self._job(request)
        await self.board.cancel(job)
        return web.json_response({"id": job.id, "status": job.status})

    async def retry(self, request: web.Request) -> web.Response:
        job = self._job(request)
        if job.status not in RETRYABLE_STATES:
            raise bad_request(f"job {job.id} is {job.status}: only FAILED or TIMED_OUT jobs can be retried")
        await self.board.retry(job)
        return web.json_response({"id": job.id, "status": job.status})

    async def health(self, request: web.Request) -> web.Response:
        counts = self.board.counts()
        ready = int(self.last_ping is not None and time.monotonic() - self.last_ping < 30)
        return web.json_response(
            {
                "jobs": {
                    "inQueue": counts[JobState.IN_QUEUE],
                    "inProgress": counts[JobState.IN_PROGRESS],
                    "completed": counts[JobState.COMPLETED],
                    "failed": counts[JobState.FAILED],
                    "cancelled": counts[JobState.CANCELLED],
                    "timedOut": counts[JobState.TIMED_OUT],
                    "retried": self.board.retried,
                },
                "workers": {
                    "idle": int(ready and not counts[JobState.IN_PROGRESS]),
                    "initializing": max(self.workers_expected - ready, 0),
                    "ready": ready,
                    "running": counts[JobState.IN_PROGRESS],
                    "throttled": 0,
                    "unhealthy": int(self.worker_exit is not None and not ready),
                    "refreshRequested": self.board.refresh_requests,
                },
                **({"lastWorkerExit": self.worker_exit} if self.worker_exit is not None and not ready else {}),
            }
        )

    async def purge_queue(self, request: web.Request) -> web.Response:
        removed = await self.board.purge()
        return web.json_response({"removed": removed, "status": "completed"})

    # -- the page ------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE_DIR / "index.html")

    async def api_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE_DIR / "api.html")

    async def page_config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "endpointId": self.endpoint_id,
                "keyRequired": self.api_key is not None,
                "uploadBucket": self.upload_bucket.bucket if self.upload_bucket else None,
            }
        )

    async def page_upload(self, request: web.Request) -> web.Response:
        """One input of the page's job, too large for the request: into the bucket; its presigned URL."""
        if self.upload_bucket is None:
            raise bad_request("this endpoint has no bucket for uploads (start it with BUCKET_ENDPOINT_URL and keys)")
        name = Path(request.query.get("name", "")).name
        if not name:
            raise bad_request("'name' (the input's file name) is required")
        with tempfile.TemporaryDirectory(prefix="page-upload-") as folder:
            path = Path(folder) / name
            with path.open("wb") as file:  # streamed: an input of gigabytes never sits in memory
                async for chunk in request.content.iter_chunked(1024 * 1024):
                    await asyncio.to_thread(file.write, chunk)
            key = f"uploads/{uuid.uuid4().hex}/{name}"
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            try:
                url = await asyncio.to_thread(self.upload_bucket.put, path, key, content_type)
            except StorageError as error:  # the bucket's refusal in words, for the page to show
                log.warning("upload of %s to the bucket failed: %s", name, error.message)
                return web.json_response({"error": error.message}, status=502)
        return web.json_response({"url": url})

    # -- worker API --------------------------------------------------------------

    async def job_take(self, request: web.Request) -> web.Response:
        jobs = await self.board.take(request.match_info["worker_id"], self.long_poll_s)
        if not jobs:
            return web.Response(status=204)
        return web.json_response({"id": jobs[0].id, "input": jobs[0].input})

    async def job_take_batch(self, request: web.Request) -> web.Response:
        """What the SDK asks for when it runs several jobs at once (its concurrency_modifier)."""
        try:
            most = int(request.query.get("batch_size", "1"))
        except ValueError:
            raise bad_request("batch_size must be a whole number") from None
        jobs = await self.board.take(request.match_info["worker_id"], self.long_poll_s, max(most, 1))
        if not jobs:
            return web.Response(status=204)
        return web.json_response([{"id": job.id, "input": job.input} for job in jobs])

    async def job_done(self, request: web.Request) -> web.Response:
        job = self._job(request)
        body = await json_body(request)  # the SDK posts JSON with a form content type
        if not isinstance(body, dict):
            raise bad_request("the result must be a JSON object")
        ignored = await self.board.report(job, body)
        if ignored is not None:
            return web.json_response({"ignored": ignored})
        return web.json_response({})

    async def job_stream(self, request: web.Request) -> web.Response:
        job = self._job(request)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise bad_request("the stream chunk must be a JSON object")
        job.stream.append({"output": body.get("output")})
        return web.json_response({})

    async def job_stop(self, request: web.Request) -> web.Response:
        job_ids = await self.board.stops(self.long_poll_s)
        return web.json_response({"jobsToStop": job_ids}) if job_ids else web.Response(status=204)

    async def ping(self, request: web.Request) -> web.Response:
        self.last_ping = time.monotonic()
        self.worker_exit = None
        return web.json_response({})


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


async def json_body(request: web.Request, max_bytes: int | None = None) -> Any:
    raw = await request.read()
    if max_bytes is not None and len(raw) > max_bytes:
        message = (
            f"the request is {len(raw) / 1e6:.1f} MB, over RunPod's limit of {max_bytes / 1e6:.1f} MB for "
            f"/{request.path.rsplit('/', 1)[-1]}: send large inputs as URLs (the client uploads them to a bucket)"
        )
        raise web.HTTPRequestEntityTooLarge(
            max_size=max_bytes,
            actual_size=len(raw),
            text=json.dumps({"error": message}),
            content_type="application/json",
        )
    try:
        return json.loads(raw)
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
