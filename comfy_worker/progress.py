"""Progress: fold a prompt's ComfyUI events into one payload, and relay it, throttled.

`ProgressTracker` routes events by type to small handlers that update the state;
`payload()` is the JSON value sent with `runpod.serverless.progress_update`, which
a client polling /status sees as `output` while the job is IN_PROGRESS:

    {"status": "running", "message": "KSampler: step 3/20", "node_id": "3",
     "node_class": "KSampler", "node_title": "KSampler", "step": 3, "max": 20,
     "progress": 0.41, "nodes_done": 2, "nodes_total": 7, "elapsed_s": 1.84,
     "preview": {"mime_type": "image/jpeg", "data": "<base64>"}}   # only if asked

`progress` is the whole workflow's fraction: nodes finished or cached, plus the
running node's step fraction, over the workflow's node count. It never goes
backwards (several samplers read as one rising value) and is 1.0 only at the end.

`ProgressRelay` limits updates to a rate, because every progress_update starts a
thread and an HTTP session. A sampler's first and last step and every change of
node are always sent; updates in between may be thinned, and the newest one
withheld is sent when the interval ends, so the shown state is never stale.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from .comfy_client import ComfyEvent

log = logging.getLogger(__name__)

# ComfyUI's binary websocket frames: uint32 event type, then for PREVIEW_IMAGE a
# uint32 image format and the image bytes (server.py BinaryEventTypes).
PREVIEW_IMAGE = 1
PREVIEW_FORMATS = {1: "image/jpeg", 2: "image/png"}


class ProgressTracker:
    def __init__(self, workflow: dict[str, Any], want_preview: bool, preview_max_bytes: int, started_at: float):
        self._nodes = workflow
        self._want_preview = want_preview
        self._preview_max_bytes = preview_max_bytes
        self._started_at = started_at
        self.status = "queued"
        self.node_id: str | None = None
        self.step: int | None = None
        self.max: int | None = None
        self.done: set[str] = set()
        self._fraction = 0.0
        self._preview: dict[str, str] | None = None
        self._routes: dict[str, Callable[[ComfyEvent], bool]] = {
            "execution_start": self._on_start,
            "execution_cached": self._on_cached,
            "executing": self._on_executing,
            "progress": self._on_progress,
            "executed": self._on_executed,
            "preview_frame": self._on_preview,
        }

    def apply(self, event: ComfyEvent) -> bool | None:
        """Update from one event. Returns None if nothing changed, True if the update
        must not be thinned out (node change, a sampler's first or last step), else False."""
        route = self._routes.get(event.type)
        return route(event) if route else None

    def finish(self) -> None:
        self.status = "collecting_outputs"
        self.node_id, self.step, self.max = None, None, None
        self._fraction = 1.0

    def payload(self) -> dict[str, Any]:
        node = self._nodes.get(self.node_id or "", {})
        payload: dict[str, Any] = {
            "status": self.status,
            "message": self._message(node),
            "node_id": self.node_id,
            "node_class": node.get("class_type"),
            "node_title": (node.get("_meta") or {}).get("title"),
            "step": self.step,
            "max": self.max,
            "progress": round(self._overall_fraction(), 4),
            "nodes_done": len(self.done & self._nodes.keys()),
            "nodes_total": len(self._nodes),
            "elapsed_s": round(time.monotonic() - self._started_at, 3),
        }
        if self._preview is not None:
            payload["preview"] = self._preview
        return payload

    # -- event handlers ------------------------------------------------------

    def _on_start(self, event: ComfyEvent) -> bool:
        self.status = "running"
        return True

    def _on_cached(self, event: ComfyEvent) -> bool:
        self.done.update(event.data.get("nodes") or [])
        return False

    def _on_executing(self, event: ComfyEvent) -> bool | None:
        node_id = event.data.get("node")
        if node_id is None:  # the prompt ended; finish() sets the final state
            return None
        if self.node_id is not None:
            self.done.add(self.node_id)
        self.status, self.node_id, self.step, self.max = "running", node_id, None, None
        return True

    def _on_progress(self, event: ComfyEvent) -> bool:
        value, maximum = int(event.data.get("value", 0)), int(event.data.get("max", 0))
        node_id = event.data.get("node") or self.node_id
        first = node_id != self.node_id or self.step is None
        self.node_id, self.step, self.max = node_id, value, maximum
        return first or value >= maximum

    def _on_executed(self, event: ComfyEvent) -> bool:
        self.done.add(event.data.get("node"))
        return False

    def _on_preview(self, event: ComfyEvent) -> bool | None:
        if not self._want_preview or event.binary is None or len(event.binary) < 8:
            return None
        event_type, image_format = struct.unpack(">II", event.binary[:8])
        image = event.binary[8:]
        if event_type != PREVIEW_IMAGE or image_format not in PREVIEW_FORMATS:
            return None
        if len(image) > self._preview_max_bytes:
            log.debug("preview of %d bytes dropped (PROGRESS_PREVIEW_MAX_BYTES)", len(image))
            return None
        self._preview = {"mime_type": PREVIEW_FORMATS[image_format], "data": base64.b64encode(image).decode("ascii")}
        return False

    # -- derived values ----------------------------------------------------------

    def _overall_fraction(self) -> float:
        if self._fraction >= 1.0 or not self._nodes:
            return self._fraction
        done = len(self.done & self._nodes.keys())
        running = self.node_id in self._nodes and self.node_id not in self.done
        step_fraction = (self.step / self.max) if (running and self.step and self.max) else 0.0
        # Below 1.0 until the prompt has really ended, and never backwards.
        self._fraction = max(self._fraction, min((done + step_fraction) / len(self._nodes), 0.99))
        return self._fraction

    def _message(self, node: dict[str, Any]) -> str:
        if self.status == "queued":
            return "waiting in ComfyUI's queue"
        if self.status == "collecting_outputs":
            return "collecting outputs"
        if self.node_id is None:
            return "starting"
        name = (node.get("_meta") or {}).get("title") or node.get("class_type") or f"node {self.node_id}"
        return f"{name}: step {self.step}/{self.max}" if self.max else name


class ProgressRelay:
    """Sends payloads through `send` at most `updates_per_s` times a second (see module doc)."""

    def __init__(self, send: Callable[[dict[str, Any]], None], updates_per_s: float):
        self._send = send
        self._interval = 1.0 / updates_per_s
        self._last_sent = float("-inf")
        self._pending: dict[str, Any] | None = None
        self._flush: asyncio.TimerHandle | None = None

    def offer(self, payload: dict[str, Any], must_send: bool) -> None:
        now = time.monotonic()
        if must_send or now - self._last_sent >= self._interval:
            self._emit(payload, now)
            return
        self._pending = payload
        if self._flush is None:
            delay = self._last_sent + self._interval - now
            self._flush = asyncio.get_running_loop().call_later(delay, self._emit_pending)

    def close(self) -> None:
        """Stop the timer; a withheld update is dropped (the job's result follows)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._pending = None

    def _emit_pending(self) -> None:
        self._flush = None
        if self._pending is not None:
            self._emit(self._pending, time.monotonic())

    def _emit(self, payload: dict[str, Any], now: float) -> None:
        self.close()
        self._last_sent = now
        try:
            self._send(payload)
        except Exception:  # progress is best effort: never fail the job over it
            log.exception("progress update failed")
