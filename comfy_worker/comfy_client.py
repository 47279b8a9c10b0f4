"""`ComfyAPI` over HTTP and a websocket, with aiohttp: the transport to one ComfyUI server.

Contract: one `ComfyClient` per worker, kept for every job, so the HTTP connection
pool and the websocket stay open between jobs (no per-job handshakes). Its session
is opened lazily, in the event loop that first uses it, and `close()` lets it be
reopened later in another loop (the worker waits for ComfyUI before the RunPod
SDK starts its own loop).

aiohttp and OSError failures are translated here, at this one boundary:
connection problems and answers that are not ComfyUI's become `ComfyUnavailable`,
a refused prompt `WorkflowRejected`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .comfy_api import ComfyEvent, EventStreamClosed
from .errors import ComfyUnavailable, WorkflowRejected

log = logging.getLogger(__name__)

TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, ValueError)  # ValueError: a body that is not JSON


class ComfyClient:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self._session

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- HTTP ------------------------------------------------------------------

    async def is_responding(self) -> bool:
        try:
            async with self.session.get(f"{self.base_url}/prompt", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def object_info(self) -> dict[str, Any]:
        return await self._request_json("GET", "/object_info")

    async def upload_input(self, name: str, data: bytes, subfolder: str = "") -> dict[str, str]:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="application/octet-stream")
        form.add_field("overwrite", "true")
        form.add_field("subfolder", subfolder)
        form.add_field("type", "input")
        return await self._request_json("POST", "/upload/image", data=form)

    async def queue_prompt(self, prompt: dict[str, Any], extra_data: dict[str, Any]) -> str:
        body = {"prompt": prompt, "client_id": self.client_id, "extra_data": extra_data}
        try:
            async with self.session.post(f"{self.base_url}/prompt", json=body) as resp:
                payload = await resp.json(content_type=None)
                if resp.status == 400 and isinstance(payload, dict):
                    raise rejection_from_response(payload)
                resp.raise_for_status()
        except TRANSPORT_ERRORS as exc:
            raise ComfyUnavailable(f"ComfyUI did not take the prompt: {exc}") from exc
        prompt_id = payload.get("prompt_id") if isinstance(payload, dict) else None
        if not isinstance(prompt_id, str):
            raise ComfyUnavailable(f"ComfyUI answered POST /prompt without a prompt id: {str(payload)[:200]}")
        return prompt_id

    async def history(self, prompt_id: str) -> dict[str, Any]:
        return (await self._request_json("GET", f"/history/{prompt_id}") or {}).get(prompt_id, {})

    async def forget_history(self, prompt_id: str) -> None:
        await self._request_json("POST", "/history", json={"delete": [prompt_id]})

    async def queue(self) -> dict[str, Any]:
        return await self._request_json("GET", "/queue")

    async def interrupt(self, prompt_id: str) -> None:
        await self._request_json("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def delete_queued(self, prompt_id: str) -> None:
        await self._request_json("POST", "/queue", json={"delete": [prompt_id]})

    async def _request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(method, f"{self.base_url}{path}", **kwargs) as resp:
                resp.raise_for_status()
                if resp.content_length == 0:
                    return None
                return await resp.json(content_type=None)
        except TRANSPORT_ERRORS as exc:
            raise ComfyUnavailable(f"ComfyUI request {method} {path} failed: {exc}") from exc

    # -- websocket -------------------------------------------------------------

    async def connect_events(self) -> None:
        if self._ws is not None and not self._ws.closed:
            return
        try:
            self._ws = await self.session.ws_connect(
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


def rejection_from_response(payload: dict[str, Any]) -> WorkflowRejected:
    """Turn POST /prompt's 400 body into an error that names each failing node."""
    error = payload.get("error") or {}
    if not isinstance(error, dict):  # older ComfyUIs send a bare string
        error = {"message": str(error)}
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
