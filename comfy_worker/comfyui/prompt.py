"""Follow one queued prompt to its end, or stop it.

Contract (prompts are queued by `comfy_events.EventRouter.submit`, which gives each
its own `PromptEvents`):
- `wait_for_prompt` passes each of the prompt's events (and preview frames) to
  `on_event` and returns once ComfyUI reports the prompt finished (`executing`
  with `node: null`). A node failure raises `ExecutionFailed` naming the node, an
  interrupt `PromptInterrupted`. If the stream drops while ComfyUI lives, it
  reconnects (once for all prompts in flight) and reads the outcome (`prompt_state`)
  for what it missed; if ComfyUI died, it raises `ComfyUnavailable` at once.
- While following, silence is not trusted: after `silence_check_s` (the setting
  EVENT_SILENCE_CHECK_S) without an event of the prompt, its state is read
  (`ComfyAPI.prompt_state`). A prompt that finished while its events went
  elsewhere (a reconnect under a new client id) ends there; one found running is
  reported started (`execution_start` with `seen_in_queue`); one that vanished
  from both is `ComfyError`.
- `stop_prompt` cancels a prompt (`ComfyAPI.cancel`: out of ComfyUI's queue, or
  interrupted if running) and, if it was running, waits (bounded) for it to end, so
  its files exist before cleanup. A failed cancel is tried again (INTERRUPT_ATTEMPTS)
  within the grace period. It returns a `Stop`: stopped, or still running after the grace period,
  with whether the interrupt was delivered (a node that never checks for
  interrupts) or not (ComfyUI did not take it): the caller must then free ComfyUI
  otherwise, and can say which happened.
What the events mean for progress is `progress`'s business; this module only
passes them on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import ComfyError, ComfyUnavailable, ExecutionFailed, PromptInterrupted, WorkerError, hide_paths
from .comfy_api import ComfyAPI, ComfyEvent, EventStreamClosed
from .comfy_events import EventRouter, PromptEvents, StreamEnded

log = logging.getLogger(__name__)

RECONNECT_ATTEMPTS = 20
RECONNECT_PAUSE_S = 0.25
INTERRUPT_ATTEMPTS = 3
INTERRUPT_PAUSE_S = 0.2


@dataclass(frozen=True)
class Stop:
    """How `stop_prompt` went: `stopped`, or why not (`undelivered` says why the
    interrupt never reached ComfyUI; None means it did and was ignored)."""

    stopped: bool
    undelivered: str | None = None

    def describe(self) -> str:
        """What happened to the prompt, for an error message ("... ran longer than x s <this>")."""
        if self.stopped:
            return "and was stopped"
        if self.undelivered is not None:
            return f"and ComfyUI did not accept the interrupt ({self.undelivered})"
        return "and ignored the interrupt"


def execution_error(data: dict[str, Any]) -> ExecutionFailed:
    """A node's failure as ComfyUI reported it, the worker's file paths shortened to their
    names (an exception's text often quotes the file it could not write)."""
    exception_message = hide_paths(str(data.get("exception_message", "")).strip())
    node = f"node {data.get('node_id')} ({data.get('node_type')})"
    message = f"{node} failed: {data.get('exception_type')}: {exception_message}"
    details = {key: data.get(key) for key in ("node_id", "node_type", "exception_type")}
    details["exception_message"] = exception_message
    details["traceback"] = [hide_paths(str(line)) for line in data.get("traceback") or []]
    return ExecutionFailed(message, details)


def interrupted_error(data: dict[str, Any]) -> PromptInterrupted:
    where = f" at node {data['node_id']} ({data.get('node_type')})" if data.get("node_id") else ""
    return PromptInterrupted(f"the workflow was interrupted{where}", {"node_id": data.get("node_id")})


async def wait_for_prompt(
    comfy: ComfyAPI,
    events: PromptEvents,
    on_event: Callable[[ComfyEvent], None],
    comfy_died: Callable[[], bool],
    silence_check_s: float,
) -> None:
    while True:
        try:
            await _follow_events(comfy, events, on_event, silence_check_s)
            return
        except StreamEnded as ended:
            log.warning("ComfyUI websocket dropped during prompt %s", events.prompt_id)
            await _reconnect(events.router, comfy_died, ended.generation)
        # Events sent while the socket was down are lost: ask the history.
        if await _finished(comfy, events.prompt_id, on_event):
            return


async def _follow_events(
    comfy: ComfyAPI, events: PromptEvents, on_event: Callable[[ComfyEvent], None], silence_check_s: float
) -> None:
    # Events are read by a task of their own; this coroutine only wakes once per
    # silent spell (no timer per event), to ask the history whether the prompt ended.
    follower = _Follower(events, on_event)
    reader = asyncio.ensure_future(follower.read())
    try:
        while True:
            seen = follower.events_seen
            done, _ = await asyncio.wait({reader}, timeout=silence_check_s)
            if done:
                return reader.result()  # raises the prompt's failure, or StreamEnded
            if follower.events_seen == seen and await _finished(comfy, events.prompt_id, on_event):
                return
    finally:
        if not reader.done():
            reader.cancel()
            await asyncio.wait({reader})
        if not reader.cancelled():
            # Retrieved, so that an outcome left behind by a cancel is not logged later
            # as "Task exception was never retrieved".
            reader.exception()


class _Follower:
    """Passes one prompt's events to `on_event` until ComfyUI reports the prompt's end."""

    def __init__(self, events: PromptEvents, on_event: Callable[[ComfyEvent], None]):
        self.events = events
        self.on_event = on_event
        self.events_seen = 0

    async def read(self) -> None:
        # A failure is raised only at the final `executing: null`: ComfyUI records the
        # prompt in its history (and off its queue) just before sending it, and cleanup
        # reads the history.
        failure: ExecutionFailed | None = None
        while True:
            event = await self.events.next()
            self.events_seen += 1
            self.on_event(event)
            if event.type == "executing" and event.data.get("node") is None:
                if failure is not None:
                    raise failure
                return
            if event.type == "execution_error":
                failure = execution_error(event.data)
            elif event.type == "execution_interrupted":
                failure = interrupted_error(event.data)


async def _finished(comfy: ComfyAPI, prompt_id: str, on_event: Callable[[ComfyEvent], None]) -> bool:
    """True if ComfyUI says the prompt finished (raises if it failed); `ComfyError` if
    ComfyUI has forgotten it altogether. A prompt found running whose start went unseen
    (its events were lost) is reported to `on_event` as started."""
    state = await comfy.prompt_state(prompt_id)
    if state.place == "finished":
        return _outcome(state.status)
    if state.place == "running":
        on_event(ComfyEvent("execution_start", {"prompt_id": prompt_id, "seen_in_queue": True}))
    if state.place in ("pending", "running"):
        return False
    raise ComfyError(f"prompt {prompt_id} vanished from ComfyUI: neither queued nor in its history")


async def _reconnect(router: EventRouter, comfy_died: Callable[[], bool], closed_generation: int) -> None:
    for _ in range(RECONNECT_ATTEMPTS):
        if comfy_died():
            raise ComfyUnavailable(
                "ComfyUI died during the job (killed, or out of memory?): its log says why; the worker's next "
                "ComfyUI serves later jobs"
            )
        try:
            await router.reconnect(closed_generation)
            return
        except ComfyUnavailable:
            await asyncio.sleep(RECONNECT_PAUSE_S)
    raise ComfyUnavailable(f"ComfyUI's websocket could not be reopened after {RECONNECT_ATTEMPTS} attempts")


def _outcome(status: dict[str, Any]) -> bool:
    """True if a finished prompt's status (its history entry's) says it succeeded; raises if it failed."""
    for name, data in status.get("messages") or []:
        if name == "execution_error":
            raise execution_error(data)
        if name == "execution_interrupted":
            raise interrupted_error(data)
    return bool(status.get("completed")) or status.get("status_str") == "success"


async def stop_prompt(comfy: ComfyAPI, events: PromptEvents, grace_s: float) -> Stop:
    """Free ComfyUI from this prompt: drop it if queued, interrupt it if running, and
    wait up to grace_s for it to end. Other prompts, queued or running, are untouched."""
    prompt_id = events.prompt_id
    cancel = _Cancel(comfy, prompt_id)
    try:
        async with asyncio.timeout(grace_s):
            acted = await cancel.send()
            if cancel.delivered and (not acted or (await comfy.prompt_state(prompt_id)).place != "running"):
                return Stop(stopped=True)  # it had finished, or it left the queue, or it ended since
            await _follow_events(comfy, events, lambda event: None, silence_check_s=min(1.0, grace_s))
        return Stop(stopped=True)
    except ExecutionFailed:
        return Stop(stopped=True)  # it ended (interrupted, as asked, or failing on its own)
    except (WorkerError, EventStreamClosed, TimeoutError) as exc:
        log.warning("prompt %s is still running %g s after the stop began: %r", prompt_id, grace_s, exc)
        return Stop(stopped=False, undelivered=cancel.why_undelivered())


class _Cancel:
    """`ComfyAPI.cancel`, tried again (INTERRUPT_ATTEMPTS) when it fails; remembers how it went."""

    def __init__(self, comfy: ComfyAPI, prompt_id: str):
        self.comfy = comfy
        self.prompt_id = prompt_id
        self.delivered = False
        self.failures: list[str] = []

    async def send(self) -> bool:
        """Whether the prompt was queued or running (False too when the cancel never got through)."""
        for attempt in range(1, INTERRUPT_ATTEMPTS + 1):
            try:
                acted = await self.comfy.cancel(self.prompt_id)
                self.delivered = True
                return acted
            except WorkerError as error:
                self.failures.append(error.message)
                log.warning(
                    "cancel of prompt %s, attempt %d of %d: %s",
                    self.prompt_id,
                    attempt,
                    INTERRUPT_ATTEMPTS,
                    error.message,
                )
            if attempt < INTERRUPT_ATTEMPTS:
                await asyncio.sleep(INTERRUPT_PAUSE_S)
        return False

    def why_undelivered(self) -> str | None:
        if self.delivered:
            return None
        if not self.failures:
            return "it was never sent: ComfyUI did not answer in time"
        return f"the cancel failed {len(self.failures)} time(s): {self.failures[-1]}"
