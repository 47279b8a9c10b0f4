"""Progress: fold a prompt's ComfyUI events into one payload, and relay it, throttled.

`ProgressTracker` routes events by type to small handlers that update the state;
`payload()` is the JSON value sent with `runpod.serverless.progress_update`, which
a client polling /status sees as `output` while the job is IN_PROGRESS:

    {"status": "running", "message": "KSampler: step 3/20", "node_id": "3",
     "node_class": "KSampler", "node_title": "KSampler", "step": 3, "max": 20,
     "progress": 0.41, "nodes_done": 2, "nodes_total": 7, "elapsed_s": 1.84, "eta_s": 2.6,
     "preview": {"mime_type": "image/jpeg", "data": "<base64>"}}   # only if asked

While the prompt waits behind other jobs of this worker, `status` is "queued", the
message says how many ("waiting in ComfyUI's queue: 1 job ahead"), `jobs_ahead`
counts them, and `eta_s` (once a prompt has run here) counts their time too.

`progress` is the whole workflow's fraction of expected time, so that 0.5 means
about half the run: once a sampler's step rate is measured, the time the prompt has
run over that plus `eta_s`; before that, each sampler step and each other node weigh
one unit (a 20-step txt2img is ~15 % done when its sampler starts). It never goes
backwards (several samplers read as one rising value) and is 1.0 only at the end.
`eta_s` estimates the seconds left (see `_eta_s`); it is absent until the running
sampler has taken two steps, so a step rate is measured.

`ProgressRelay` limits updates to a rate, because every progress_update starts a
thread and an HTTP session. A sampler's first and last step and every change of
node are always sent; updates in between may be thinned, and the newest one
withheld is sent when the interval ends, so the shown state is never stale.
Where payloads go is the worker's `ProgressSink`: RunPod's progress_update in
production, the log in local runs, a list in tests.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from ..comfyui.comfy_api import ComfyEvent
from ..request.workflow import Workflow

log = logging.getLogger(__name__)

# ComfyUI's binary websocket frames: uint32 event type, then for PREVIEW_IMAGE a
# uint32 image format and the image bytes (server.py BinaryEventTypes).
PREVIEW_IMAGE = 1
PREVIEW_FORMATS = {1: "image/jpeg", 2: "image/png"}

ProgressSink = Callable[[dict[str, Any], dict[str, Any]], None]
"""Where a job's progress goes: called with (job, payload), as runpod.serverless.progress_update is."""


def log_progress(job: dict[str, Any], payload: dict[str, Any]) -> None:
    """The progress sink for local runs, where there is no RunPod job to report to."""
    log.info("progress %s: %s (%.0f%%)", job.get("id"), payload.get("message"), 100 * payload.get("progress", 0))


class Change(enum.Enum):
    """What an event did to the progress state, which decides whether to send it."""

    NONE = "none"  # nothing to send
    ROUTINE = "routine"  # may be thinned out by the throttle
    MILESTONE = "milestone"  # always sent: a node change, a sampler's first or last step


class ProgressTracker:
    def __init__(
        self,
        workflow: Workflow,
        want_preview: bool,
        preview_max_bytes: int,
        started_at: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._workflow = workflow
        self._clock = clock
        self._want_preview = want_preview
        self._preview_max_bytes = preview_max_bytes
        self._started_at = started_at
        self._running_since: float | None = None  # when ComfyUI began the prompt
        self.status = "queued"
        self.jobs_ahead: int | None = None  # while queued: this worker's prompts ahead in ComfyUI's queue
        self._queue_estimate: tuple[float, float, float] | None = None  # (starts_in_s, run_s, told at)
        self.node_id: str | None = None
        self.step: int | None = None
        self.max: int | None = None
        self.done: set[str] = set()  # nodes of this workflow that finished or were cached
        self._fraction = 0.0
        self._preview: dict[str, str] | None = None
        self._node_started_at: float | None = None
        self._first_step: tuple[int, float] | None = None  # (step, when) of the running sampler
        self._step_s: float | None = None  # seconds per sampler step, measured
        self._plain_node_s: list[float] = []  # how long nodes without steps took
        self._routes: dict[str, Callable[[ComfyEvent], Change]] = {
            "execution_start": self._on_start,
            "execution_cached": self._on_cached,
            "executing": self._on_executing,
            "progress": self._on_progress,
            "executed": self._on_executed,
            "preview_frame": self._on_preview,
            "queue_position": self._on_queue_position,
        }

    def apply(self, event: ComfyEvent) -> Change:
        """Update the state from one event."""
        route = self._routes.get(event.type)
        return route(event) if route else Change.NONE

    def finish(self) -> None:
        self.status = "collecting_outputs"
        self.node_id, self.step, self.max = None, None, None
        self._fraction = 1.0

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "status": self.status,
            "message": self._message(),
            "node_id": self.node_id,
            "node_class": self._workflow.class_type(self.node_id),
            "node_title": self._workflow.title(self.node_id),
            "step": self.step,
            "max": self.max,
            "progress": round(self._overall_fraction(), 4),
            "nodes_done": self._nodes_done(),
            "nodes_total": len(self._workflow),
            "elapsed_s": round(self._clock() - self._started_at, 3),
        }
        if self.status == "queued" and self.jobs_ahead is not None:
            payload["jobs_ahead"] = self.jobs_ahead
        eta_s = self._eta_s()
        if eta_s is not None:
            payload["eta_s"] = round(eta_s, 1)
        if self._preview is not None:
            payload["preview"] = self._preview
        return payload

    # -- event handlers ------------------------------------------------------

    def _on_start(self, event: ComfyEvent) -> Change:
        self.status = "running"
        self._running_since = self._clock()
        return Change.MILESTONE

    def _on_queue_position(self, event: ComfyEvent) -> Change:
        if self.status != "queued":
            return Change.NONE
        self.jobs_ahead = int(event.data.get("ahead") or 0)
        starts_in_s, run_s = event.data.get("starts_in_s"), event.data.get("run_s")
        if isinstance(starts_in_s, float | int) and isinstance(run_s, float | int):
            self._queue_estimate = (float(starts_in_s), float(run_s), self._clock())
        else:
            self._queue_estimate = None
        return Change.MILESTONE

    def _on_cached(self, event: ComfyEvent) -> Change:
        self._mark_done(*(event.data.get("nodes") or []))
        return Change.ROUTINE

    def _on_executing(self, event: ComfyEvent) -> Change:
        node_id = event.data.get("node")
        if node_id is None:  # the prompt ended; finish() sets the final state
            return Change.NONE
        now = self._clock()
        if self.node_id is not None:
            self._mark_done(self.node_id)
            if self.max is None and self._node_started_at is not None:
                self._plain_node_s.append(now - self._node_started_at)
        self.status, self.node_id, self.step, self.max = "running", node_id, None, None
        self._node_started_at, self._first_step = now, None
        return Change.MILESTONE

    def _on_progress(self, event: ComfyEvent) -> Change:
        value, maximum = int(event.data.get("value", 0)), int(event.data.get("max", 0))
        node_id = event.data.get("node") or self.node_id
        first = node_id != self.node_id or self.step is None
        self.node_id, self.step, self.max = node_id, value, maximum
        now = self._clock()
        if first or self._first_step is None:
            self._first_step = (value, now)
        elif value > self._first_step[0]:
            self._step_s = (now - self._first_step[1]) / (value - self._first_step[0])
        return Change.MILESTONE if first or value >= maximum else Change.ROUTINE

    def _on_executed(self, event: ComfyEvent) -> Change:
        self._mark_done(event.data.get("node"))
        return Change.ROUTINE

    def _on_preview(self, event: ComfyEvent) -> Change:
        if not self._want_preview or event.binary is None or len(event.binary) < 8:
            return Change.NONE
        event_type, image_format = struct.unpack(">II", event.binary[:8])
        image = event.binary[8:]
        if event_type != PREVIEW_IMAGE or image_format not in PREVIEW_FORMATS:
            return Change.NONE
        if len(image) > self._preview_max_bytes:
            log.debug("preview of %d bytes dropped (PROGRESS_PREVIEW_MAX_BYTES)", len(image))
            return Change.NONE
        self._preview = {"mime_type": PREVIEW_FORMATS[image_format], "data": base64.b64encode(image).decode("ascii")}
        return Change.ROUTINE

    # -- derived values ----------------------------------------------------------

    def _mark_done(self, *node_ids: str | None) -> None:
        # Only this workflow's nodes count (ComfyUI may report expanded subgraph nodes).
        self.done.update(node_id for node_id in node_ids if node_id is not None and node_id in self._workflow)

    def _nodes_done(self) -> int:
        return len(self.done)

    def _overall_fraction(self) -> float:
        if self._fraction >= 1.0 or not self._workflow or self.status == "queued":
            return self._fraction
        eta_s = self._eta_s()
        ran_s = self._clock() - (self._running_since if self._running_since is not None else self._started_at)
        if eta_s is not None and ran_s + eta_s > 0:
            estimate = ran_s / (ran_s + eta_s)
        else:
            estimate = self._unit_fraction()
        # Below 1.0 until the prompt has really ended, and never backwards.
        self._fraction = max(self._fraction, min(estimate, 0.99))
        return self._fraction

    def _unit_fraction(self) -> float:
        """Done over total, where each sampler step and each other node weigh one unit."""
        done = total = 0.0
        for node_id in self._workflow:
            units = self._steps(node_id) or 1
            total += units
            if node_id in self.done:
                done += units
            elif node_id == self.node_id and self.step and self.max:
                done += units * min(self.step / self.max, 1.0)
        return done / total

    def _steps(self, node_id: str) -> int | None:
        """A sampler's step count, from its `steps` input (None for other nodes, or when wired)."""
        steps = self._workflow.input_value(node_id, "steps")
        return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None

    def _eta_s(self) -> float | None:
        """Seconds left: the running sampler's steps and every later sampler's at the
        measured step rate, other nodes at the mean time such nodes took in this job.
        None until a step rate is measured. While queued: the time until the prompts
        ahead end, and then this worker's typical run (`EventRouter`'s estimate)."""
        if self.status == "queued" and self._queue_estimate is not None:
            starts_in_s, run_s, told_at = self._queue_estimate
            return max(starts_in_s - (self._clock() - told_at), 0.0) + run_s
        if self.status != "running" or self._step_s is None:
            return None
        plain_s = sum(self._plain_node_s) / len(self._plain_node_s) if self._plain_node_s else 0.0
        left = 0.0
        if self.node_id is not None and self.max is not None and self.step is not None:
            left += (self.max - self.step) * self._step_s
        for node_id in self._workflow:
            if node_id in self.done or node_id == self.node_id:
                continue
            steps = self._steps(node_id)
            left += steps * self._step_s if steps is not None else plain_s
        return left

    def _message(self) -> str:
        if self.status == "queued":
            if self.jobs_ahead:
                return f"waiting in ComfyUI's queue: {self.jobs_ahead} job{'s' if self.jobs_ahead > 1 else ''} ahead"
            return "waiting in ComfyUI's queue"
        if self.status == "collecting_outputs":
            return "collecting outputs"
        if self.node_id is None:
            return "starting"
        name = self._workflow.display_name(self.node_id)
        return f"{name}: step {self.step}/{self.max}" if self.max else name


class ProgressRelay:
    """Sends payloads through `send` at most `updates_per_s` times a second (see module doc)."""

    def __init__(self, send: Callable[[dict[str, Any]], None], updates_per_s: float):
        """`send` is the job's sink, bound to the job."""
        self._send = send
        self._interval = 1.0 / updates_per_s
        self._last_sent = float("-inf")
        self._pending: dict[str, Any] | None = None
        self._flush: asyncio.TimerHandle | None = None

    def offer(self, payload: dict[str, Any], change: Change) -> None:
        if change is Change.NONE:
            return
        now = time.monotonic()
        if change is Change.MILESTONE or now - self._last_sent >= self._interval:
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
