"""ComfyUI's one event stream, routed to the prompts in flight.

Contract: `EventRouter(comfy)` is the only reader of `comfy.events()`, so several
jobs can have prompts in ComfyUI's queue at once. `await submit(prompt, extra_data)`
opens the stream if needed, queues the prompt and returns a `PromptEvents`: that
prompt's events, in order, including any that arrived before POST /prompt answered.
- Events are routed by prompt id. Binary preview frames carry none: they go to the
  prompt ComfyUI is running (from its `execution_start` / `executing` events).
- Each prompt also gets a `queue_position` event (made here, not by ComfyUI) when it
  is queued and whenever the prompt ahead of it starts or ends: `{"ahead": n,
  "starts_in_s": s | None, "run_s": s | None}`, where `run_s` is the median run time of
  this worker's recent prompts and `starts_in_s` estimates when this one starts.
  Prompts run in the order they were queued (ComfyUI's queue is first in, first out).
- When the stream closes, every open `PromptEvents` raises `StreamEnded` once;
  `reconnect(seen)` opens a new stream (a new client id) unless another prompt's
  follower already has, so prompts never race each other's reconnects.
- `close()` ends the reader (the connection is dropped or its event loop ends).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from .comfy_api import ComfyAPI, ComfyEvent, EventStreamClosed

log = logging.getLogger(__name__)

UNCLAIMED_PROMPTS = 16  # prompts whose events arrived before their submitter heard the id
UNCLAIMED_EVENTS = 256  # events kept for each of them
RUN_TIMES_KEPT = 5


class StreamEnded(EventStreamClosed):
    """The stream of `generation` closed (`EventRouter.reconnect` takes it)."""

    def __init__(self, generation: int):
        super().__init__("ComfyUI's event stream closed")
        self.generation = generation


class PromptEvents:
    """One prompt's events; `next()` raises `StreamEnded` when the stream closed."""

    def __init__(self, router: EventRouter, prompt_id: str):
        self.router = router
        self.prompt_id = prompt_id
        self._events: asyncio.Queue[ComfyEvent | StreamEnded] = asyncio.Queue()
        self.started = False  # ComfyUI began running it (as far as its events tell)

    async def next(self) -> ComfyEvent:
        item = await self._events.get()
        if isinstance(item, StreamEnded):
            raise StreamEnded(item.generation)
        return item

    def close(self) -> None:
        """Stop routing to this prompt (its job is done with it)."""
        self.router.forget(self)

    def _put(self, item: ComfyEvent | StreamEnded) -> None:
        self._events.put_nowait(item)


class EventRouter:
    def __init__(self, comfy: ComfyAPI, clock: Callable[[], float] = time.monotonic):
        self.comfy = comfy
        self.clock = clock
        self.generation = 0  # bumped at every new stream
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None
        self._prompts: dict[str, PromptEvents] = {}  # in the order they were queued
        self._unclaimed: collections.OrderedDict[str, list[ComfyEvent]] = collections.OrderedDict()
        self._running: str | None = None
        self._running_since: float | None = None
        self._run_times: collections.deque[float] = collections.deque(maxlen=RUN_TIMES_KEPT)

    async def submit(self, prompt: dict[str, Any], extra_data: dict[str, Any]) -> PromptEvents:
        await self._ensure_reader()
        prompt_id = await self.comfy.queue_prompt(prompt, extra_data)
        events = PromptEvents(self, prompt_id)
        self._prompts[prompt_id] = events
        events._put(self._position(prompt_id))
        for event in self._unclaimed.pop(prompt_id, []):
            self._route(events, event)
        return events

    def forget(self, events: PromptEvents) -> None:
        if self._prompts.get(events.prompt_id) is events:
            del self._prompts[events.prompt_id]
            self._tell_positions()

    async def reconnect(self, seen_generation: int) -> None:
        """Open a new stream, unless one newer than `seen_generation` is open already."""
        async with self._lock():
            if self.generation > seen_generation and self._reader is not None and not self._reader.done():
                return
            await self._stop_reader()
            await self.comfy.reconnect_events()
            self._start_reader()

    async def close(self) -> None:
        await self._stop_reader()
        self._connecting = None  # the next use may be in another event loop

    # -- the reader -----------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        return self._connecting

    async def _ensure_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            return
        async with self._lock():
            if self._reader is None or self._reader.done():
                await self.comfy.connect_events()
                self._start_reader()

    def _start_reader(self) -> None:
        self.generation += 1
        self._reader = asyncio.ensure_future(self._read())

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            await asyncio.wait({reader})

    async def _read(self) -> None:
        generation = self.generation
        stream = self.comfy.events()
        try:
            async for event in stream:
                self._dispatch(event)
        except EventStreamClosed as closed:
            log.warning("ComfyUI's event stream closed: %s", closed)
        except Exception as exc:  # the stream is gone either way; followers decide what it means
            log.warning("ComfyUI's event stream failed: %r", exc)
            await stream.aclose()
        finally:
            self._running, self._running_since = None, None
            for events in self._prompts.values():
                events._put(StreamEnded(generation))

    def _dispatch(self, event: ComfyEvent) -> None:
        prompt_id = event.prompt_id if event.type != "preview_frame" else self._running
        if prompt_id is None:
            return
        events = self._prompts.get(prompt_id)
        if events is not None:
            self._route(events, event)
        elif event.type != "preview_frame":
            kept = self._unclaimed.setdefault(prompt_id, [])
            if len(kept) < UNCLAIMED_EVENTS:
                kept.append(event)
            while len(self._unclaimed) > UNCLAIMED_PROMPTS:
                self._unclaimed.popitem(last=False)
        self._track_running(event, prompt_id)

    def _route(self, events: PromptEvents, event: ComfyEvent) -> None:
        if event.type in ("execution_start", "executing", "progress"):
            events.started = True
        events._put(event)

    def _track_running(self, event: ComfyEvent, prompt_id: str) -> None:
        if event.type == "executing" and event.data.get("node") is None:  # the prompt ended
            if self._running == prompt_id and self._running_since is not None:
                self._run_times.append(self.clock() - self._running_since)
                self._running, self._running_since = None, None
                self._tell_positions()
        elif event.type in ("execution_start", "executing") and self._running != prompt_id:
            self._running, self._running_since = prompt_id, self.clock()
            self._tell_positions()

    # -- positions ---------------------------------------------------------------------

    def _tell_positions(self) -> None:
        for prompt_id, events in self._prompts.items():
            if not events.started:
                events._put(self._position(prompt_id))

    def _position(self, prompt_id: str) -> ComfyEvent:
        order = list(self._prompts)
        before = order[: order.index(prompt_id)]
        # Ahead: the running prompt, and those queued before this one that have not started.
        ahead = [other for other in before if other == self._running or not self._prompts[other].started]
        run_s = statistics.median(self._run_times) if self._run_times else None
        starts_in_s = None
        if run_s is not None:
            starts_in_s = 0.0
            for other in ahead:
                if other == self._running and self._running_since is not None:
                    starts_in_s += max(run_s - (self.clock() - self._running_since), 0.0)
                else:
                    starts_in_s += run_s
        data = {"prompt_id": prompt_id, "ahead": len(ahead), "starts_in_s": starts_in_s, "run_s": run_s}
        return ComfyEvent("queue_position", data)
