"""`ComfyAPI` over HTTP and a websocket, with aiohttp: the transport to one ComfyUI server.

Contract: one `ComfyClient` per worker, kept for every job, so the HTTP connection
pool and the websocket stay open between jobs (no per-job handshakes). Its session
is opened lazily, in the event loop that first uses it, and `close()` lets it be
reopened later in another loop (the worker waits for ComfyUI before the RunPod
SDK starts its own loop).

aiohttp and OSError failures are translated here, at this one boundary: a
connection that fails becomes `ComfyUnavailable` (the worker asks to be replaced);
an error status or an answer that is not ComfyUI's, from a ComfyUI that answers,
becomes `ComfyError` (the worker keeps serving; GETs are retried on a 5xx first);
a refused prompt becomes `WorkflowRejected`.

It reads once what the ComfyUI answering offers (`offers()`: GET /system_stats for its
version; GET /api/jobs and POST /api/jobs/{id}/cancel, for an id no job has, to see whether
those routes exist) and then answers `prompt_state` with one GET /api/jobs/{id} where
there is a jobs API, else GET /history/{id} and /queue; `cancel` with the atomic POST
/api/jobs/{id}/cancel where there is one, else POST /queue {delete} or POST /interrupt
after reading where the prompt is. Prompts are sent under an id of the client's, a
lowercase UUID (newer ComfyUIs refuse any other spelling).

The websocket sends heartbeats, so a frozen, half-open connection is noticed and
closed. A reconnect takes a new client id: ComfyUI's handler for the old socket
forgets "its" client id when it closes, and with the same id it would forget the
new socket instead. Events of a prompt queued under the old id are then lost;
`prompt` reads its outcome from /history.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncGenerator
from pathlib import PurePath
from typing import Any

import aiohttp

from ..core.errors import ComfyError, ComfyUnavailable, WorkflowRejected
from .comfy_api import ComfyEvent, ComfyOffers, EventStreamClosed, PromptState

log = logging.getLogger(__name__)

CONNECTION_ERRORS = (aiohttp.ClientConnectionError, OSError, TimeoutError)
GET_ATTEMPTS = 3
RETRY_PAUSE_S = 0.2
WEBSOCKET_HEARTBEAT_S = 10.0


class ComfyClient:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._session: aiohttp.ClientSession | None = None
        self._closer: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._offers: ComfyOffers | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
            self._closer = asyncio.get_running_loop().create_task(self._close_with_the_loop(self._session))
        return self._session

    async def _close_with_the_loop(self, session: aiohttp.ClientSession) -> None:
        """Close the session when its event loop shuts down. RunPod's SDK ends its loop on
        SIGTERM without a hook for its handler; asyncio.run then cancels this task, and
        the session closes cleanly instead of being reported unclosed at exit."""
        try:
            await asyncio.Event().wait()
        finally:
            if self._session is session:
                await self.close()
            elif not session.closed:
                await session.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._closer is not None and self._closer is not asyncio.current_task():
            self._closer.cancel()
            self._closer = None

    # -- HTTP ------------------------------------------------------------------

    async def is_responding(self) -> bool:
        try:
            async with self.session.get(f"{self.base_url}/prompt", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def offers(self) -> ComfyOffers:
        if self._offers is None:
            stats = await self._request_json("GET", "/system_stats") or {}
            version = str((stats.get("system") or {}).get("comfyui_version") or "unknown")
            jobs_api = await self._route_answers("GET", "/api/jobs?limit=1", "jobs")
            # An id no job has: the cancel is a no-op by the route's contract.
            atomic_cancel = jobs_api and await self._route_answers(
                "POST", f"/api/jobs/{uuid.uuid4()}/cancel", "cancelled"
            )
            self._offers = ComfyOffers(version, jobs_api, atomic_cancel)
        return self._offers

    async def _route_answers(self, method: str, path: str, key: str) -> bool:
        try:
            payload = await self._request_json(method, path)
        except ComfyError:
            return False  # 404 or 405: an older ComfyUI
        return isinstance(payload, dict) and key in payload

    async def object_info(self) -> dict[str, Any]:
        return await self._request_json("GET", "/object_info")

    async def model_folders(self) -> dict[str, list[str]]:
        return await self._request_json("GET", "/internal/folder_paths") or {}

    async def model_files(self, folder: str) -> list[str]:
        return await self._request_json("GET", f"/models/{folder}") or []

    async def custom_node_import_errors(self) -> dict[str, str] | None:
        try:
            logs = await self._request_json("GET", "/internal/logs/raw")
            text = "".join(str(entry.get("m", "")) for entry in logs["entries"])
        except (ComfyError, TypeError, KeyError, AttributeError):
            return None
        return import_errors(text)

    async def queue_prompt(self, prompt: dict[str, Any], extra_data: dict[str, Any]) -> str:
        body = {"prompt": prompt, "client_id": self.client_id, "extra_data": extra_data, "prompt_id": str(uuid.uuid4())}
        try:
            async with self.session.post(f"{self.base_url}/prompt", json=body) as resp:
                text = await resp.text()
                status = resp.status
        except CONNECTION_ERRORS as exc:
            raise ComfyUnavailable(f"ComfyUI did not take the prompt: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise ComfyError(f"ComfyUI's answer to POST /prompt broke off: {exc}", {"request": "POST /prompt"}) from exc
        payload = _json_or_none(text)
        if status == 400 and isinstance(payload, dict):
            raise rejection_from_response(payload)
        prompt_id = payload.get("prompt_id") if isinstance(payload, dict) else None
        if status != 200 or not isinstance(prompt_id, str):
            raise ComfyError(
                f"ComfyUI answered POST /prompt with HTTP {status} and no prompt id: {text[:200]!r}",
                {"request": "POST /prompt", "status": status},
            )
        return prompt_id

    async def history(self, prompt_id: str) -> dict[str, Any]:
        return (await self._request_json("GET", f"/history/{prompt_id}") or {}).get(prompt_id, {})

    async def forget_history(self, prompt_id: str) -> None:
        await self._request_json("POST", "/history", json={"delete": [prompt_id]})

    async def prompt_state(self, prompt_id: str) -> PromptState:
        if (await self.offers()).jobs_api:
            try:
                job = await self._request_json("GET", f"/api/jobs/{prompt_id}") or {}
            except ComfyError as error:
                if error.details.get("status") == 404:
                    return PromptState("unknown")
                raise
            job_status = str(job.get("status"))
            place = {"pending": "pending", "in_progress": "running"}.get(job_status, "finished")
            if place != "finished":
                return PromptState(place)
            status = job.get("execution_status") or {"status_str": "success" if job_status == "completed" else "error"}
            return PromptState("finished", status)
        entry = await self.history(prompt_id)
        if not entry:
            queue = await self._request_json("GET", "/queue") or {}
            for key, place in (("queue_running", "running"), ("queue_pending", "pending")):
                if any(item[1] == prompt_id for item in queue.get(key, [])):
                    return PromptState(place)
            entry = await self.history(prompt_id)  # it may have finished between the two reads
        return PromptState("finished", entry.get("status") or {}) if entry else PromptState("unknown")

    async def cancel(self, prompt_id: str) -> bool:
        if (await self.offers()).atomic_cancel:
            answer = await self._request_json("POST", f"/api/jobs/{prompt_id}/cancel") or {}
            return bool(answer.get("cancelled"))
        # Read, then act: a prompt may move on in between, which the reads after catch.
        place = (await self.prompt_state(prompt_id)).place
        if place == "pending":
            await self._request_json("POST", "/queue", json={"delete": [prompt_id]})
            place = (await self.prompt_state(prompt_id)).place  # "running" if it started meanwhile
            if place != "running":
                return True
        if place == "running":
            # ComfyUI interrupts only if this prompt is the one running when the request lands.
            await self._request_json("POST", "/interrupt", json={"prompt_id": prompt_id})
            return True
        return False

    async def _request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        attempts = GET_ATTEMPTS if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                async with self.session.request(method, f"{self.base_url}{path}", **kwargs) as resp:
                    text = await resp.text()
                    status = resp.status
            except CONNECTION_ERRORS as exc:
                raise ComfyUnavailable(f"ComfyUI request {method} {path} failed: {exc}") from exc
            except aiohttp.ClientError as exc:
                raise ComfyError(f"ComfyUI's answer to {method} {path} broke off: {exc}", {"request": path}) from exc
            if status >= 500 and attempt < attempts:
                log.warning("ComfyUI answered %s %s with HTTP %d; retrying", method, path, status)
                await asyncio.sleep(RETRY_PAUSE_S * attempt)
                continue
            if status >= 400:
                raise ComfyError(
                    f"ComfyUI answered {method} {path} with HTTP {status}: {text[:200]!r}",
                    {"request": f"{method} {path}", "status": status},
                )
            if not text:
                return None
            payload = _json_or_none(text)
            if payload is None:
                raise ComfyError(
                    f"ComfyUI answered {method} {path} with something that is not JSON: {text[:200]!r}",
                    {"request": f"{method} {path}", "status": status},
                )
            return payload
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- websocket -------------------------------------------------------------

    async def connect_events(self) -> None:
        if self._ws is not None and not self._ws.closed:
            return
        try:
            self._ws = await self.session.ws_connect(
                f"{self.base_url}/ws?clientId={self.client_id}", max_msg_size=0, heartbeat=WEBSOCKET_HEARTBEAT_S
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise ComfyUnavailable(f"cannot open ComfyUI's websocket: {exc}") from exc

    async def reconnect_events(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self.client_id = uuid.uuid4().hex  # see the module docstring
        await self.connect_events()

    async def events(self) -> AsyncGenerator[ComfyEvent, None]:
        await self.connect_events()
        ws = self._ws
        assert ws is not None
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                try:
                    event = json.loads(message.data)
                except ValueError:
                    log.warning("ignored a websocket message that is not JSON: %.80s", message.data)
                    continue
                if isinstance(event, dict):
                    yield ComfyEvent(str(event.get("type", "")), event.get("data") or {})
            elif message.type == aiohttp.WSMsgType.BINARY:
                yield ComfyEvent("preview_frame", {}, binary=message.data)
            elif message.type == aiohttp.WSMsgType.ERROR:
                break
        raise EventStreamClosed(f"websocket closed (code {ws.close_code})")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def rejection_from_response(payload: dict[str, Any]) -> WorkflowRejected:
    """Turn POST /prompt's 400 body into an error that names each failing node."""
    error = payload.get("error") or {}
    if not isinstance(error, dict):  # older ComfyUIs send a bare string
        error = {"message": str(error)}
    node_errors = []
    for node_id, entry in (payload.get("node_errors") or {}).items():
        for item in entry.get("errors", []):
            extra = item.get("extra_info") or {}
            node_error = {
                "node_id": node_id,
                "class_type": entry.get("class_type"),
                "type": item.get("type"),
                "message": item.get("message"),
                "details": item.get("details"),
                "input": extra.get("input_name"),
            }
            if "received_value" in extra:
                node_error["received_value"] = extra["received_value"]
            node_errors.append(node_error)
    return WorkflowRejected.from_comfy({k: error.get(k) for k in ("type", "message", "details")}, node_errors)


# ComfyUI's words (nodes.py) for a custom node it did not load, and for one with no nodes.
_CANNOT_IMPORT = re.compile(r"^Cannot import (.+) module for custom nodes: (.*)$", re.MULTILINE)
_NO_MAPPINGS = re.compile(r"^Skip (.+) module for custom nodes due to the lack of NODE_CLASS_MAPPINGS", re.MULTILINE)


def import_errors(log_text: str) -> dict[str, str]:
    """Custom node folder -> ComfyUI's reason it did not load, from its log's text."""
    found = {}
    for match in _CANNOT_IMPORT.finditer(log_text):
        found[PurePath(match.group(1).rstrip("/")).name] = match.group(2).strip() or "its import failed"
    for match in _NO_MAPPINGS.finditer(log_text):
        found[PurePath(match.group(1).rstrip("/")).name] = "it declares no NODE_CLASS_MAPPINGS (nor comfy_entrypoint)"
    return found
