"""Transport to one ComfyUI server: its HTTP API and its websocket, nothing else.

Contract: one `ComfyClient` per worker process, created inside the running event
loop and kept for every job, so the HTTP connection pool and the websocket stay
open between jobs (no per-job handshakes). Jobs run one at a time, so the one
websocket (opened with this worker's client id) carries the events of whichever
prompt is running; callers filter by prompt_id.

aiohttp and OSError failures are translated here, at this one boundary:
connection problems become `ComfyUnavailable`, a refused prompt `WorkflowRejected`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from .errors import ComfyUnavailable, WorkflowRejected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComfyEvent:
    """One websocket message: JSON events carry `type` and `data`; binary preview
    frames arrive as type "preview_frame" with the raw bytes in `binary`."""

    type: str
    data: dict[str, Any]
    binary: bytes | None = None

    @property
    def prompt_id(self) -> str | None:
        return self.data.get("prompt_id")


class EventStreamClosed(Exception):
    """The websocket closed. Whether ComfyUI died or only the socket dropped is the
    caller's call (execution checks the process and reconnects)."""


class ComfyClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None):
        self.base_url = base_url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        await self._session.close()

    # -- HTTP ------------------------------------------------------------------

    async def is_responding(self) -> bool:
        """True when ComfyUI answers HTTP (used while it starts)."""
        try:
            async with self._session.get(f"{self.base_url}/prompt", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def object_info(self) -> dict[str, Any]:
        return await self._get_json("/object_info")

    async def upload_image(self, name: str, data: bytes, subfolder: str = "") -> dict[str, str]:
        """Store a file in ComfyUI's input folder; returns {"name", "subfolder", "type"}."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="application/octet-stream")
        form.add_field("overwrite", "true")
        form.add_field("subfolder", subfolder)
        form.add_field("type", "input")
        return await self._request_json("POST", "/upload/image", data=form)

    async def queue_prompt(self, workflow: dict[str, Any], extra_data: dict[str, Any]) -> str:
        """POST /prompt for this client id; returns the prompt id or raises WorkflowRejected."""
        body = {"prompt": workflow, "client_id": self.client_id, "extra_data": extra_data}
        try:
            async with self._session.post(f"{self.base_url}/prompt", json=body) as resp:
                payload = await resp.json(content_type=None)
                if resp.status == 400:
                    raise rejection_from_response(payload)
                resp.raise_for_status()
        except (aiohttp.ClientError, OSError) as exc:
            raise ComfyUnavailable(f"ComfyUI did not take the prompt: {exc}") from exc
        return payload["prompt_id"]

    async def history(self, prompt_id: str) -> dict[str, Any]:
        """The prompt's history entry ({} while it has none)."""
        return (await self._get_json(f"/history/{prompt_id}")).get(prompt_id, {})

    async def forget_history(self, prompt_id: str) -> None:
        """Drop the prompt from ComfyUI's history so a warm worker's memory does not grow."""
        await self._request_json("POST", "/history", json={"delete": [prompt_id]})

    async def queue(self) -> dict[str, Any]:
        """{"queue_running": [...], "queue_pending": [...]}; entries are [number, prompt_id, ...]."""
        return await self._get_json("/queue")

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt the prompt if it is the one running (takes effect between steps)."""
        await self._request_json("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def delete_queued(self, prompt_id: str) -> None:
        await self._request_json("POST", "/queue", json={"delete": [prompt_id]})

    async def _get_json(self, path: str) -> Any:
        return await self._request_json("GET", path)

    async def _request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self._session.request(method, f"{self.base_url}{path}", **kwargs) as resp:
                resp.raise_for_status()
                if resp.content_length == 0:
                    return None
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError) as exc:
            raise ComfyUnavailable(f"ComfyUI request {method} {path} failed: {exc}") from exc

    # -- websocket -------------------------------------------------------------

    async def connect_events(self) -> None:
        """Open the websocket unless it is open; call before queueing a prompt, since
        ComfyUI sends a prompt's events only to the socket that was open at submit time."""
        if self._ws is not None and not self._ws.closed:
            return
        try:
            self._ws = await self._session.ws_connect(
                f"{self.base_url}/ws?clientId={self.client_id}", max_msg_size=0, heartbeat=None
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise ComfyUnavailable(f"cannot open ComfyUI's websocket: {exc}") from exc

    async def reconnect_events(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        await self.connect_events()

    async def events(self) -> AsyncIterator[ComfyEvent]:
        """Yield events until the socket closes; raises EventStreamClosed when it does."""
        if self._ws is None:
            await self.connect_events()
        ws = self._ws
        assert ws is not None
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(message.data)
                yield ComfyEvent(event.get("type", ""), event.get("data") or {})
            elif message.type == aiohttp.WSMsgType.BINARY:
                yield ComfyEvent("preview_frame", {}, binary=message.data)
            elif message.type == aiohttp.WSMsgType.ERROR:
                break
        raise EventStreamClosed(f"websocket closed (code {ws.close_code})")


def rejection_from_response(payload: dict[str, Any]) -> WorkflowRejected:
    """Turn POST /prompt's 400 body into an error that names each failing node."""
    error = payload.get("error") or {}
    node_errors = []
    for node_id, entry in (payload.get("node_errors") or {}).items():
        for item in entry.get("errors", []):
            extra = item.get("extra_info") or {}
            node_errors.append(
                {
                    "node_id": node_id,
                    "class_type": entry.get("class_type"),
                    "type": item.get("type"),
                    "message": item.get("message"),
                    "details": item.get("details"),
                    "input": extra.get("input_name"),
                }
            )
    if node_errors:
        parts = [
            f"node {e['node_id']} ({e['class_type']})"
            + (f" input '{e['input']}'" if e["input"] else "")
            + f": {e['message']}"
            + (f" - {e['details']}" if e["details"] else "")
            for e in node_errors
        ]
        message = "workflow rejected by ComfyUI: " + "; ".join(parts)
    else:
        message = f"workflow rejected by ComfyUI: {error.get('message', 'no reason given')}"
        if error.get("details"):
            message += f" ({error['details']})"
    return WorkflowRejected(
        message, {"comfy_error": {k: error.get(k) for k in ("type", "message", "details")}, "node_errors": node_errors}
    )
