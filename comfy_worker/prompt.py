"""Run one prompt on ComfyUI: submit it, follow its events to the end, or stop it.

Contract:
- `submit_prompt` opens the event stream, then queues the workflow, and returns
  the prompt id (ComfyUI sends a prompt's events only to a stream open at submit).
- `wait_for_prompt` passes each of the prompt's events (and preview frames) to
  `on_event` and returns once ComfyUI reports the prompt finished (`executing`
  with `node: null`). A node failure raises `ExecutionFailed` naming the node, an
  interrupt `PromptInterrupted`. If the stream drops while ComfyUI lives, it
  reconnects and reads the outcome from /history for what it missed; if ComfyUI
  died, it raises `ComfyUnavailable` at once.
- While following, silence is not trusted: after `silence_check_s` (the setting
  EVENT_SILENCE_CHECK_S) without an event
  of the prompt, its history (and, if it has none, the queue) is read. A prompt
  that finished while its events went elsewhere (a reconnect under a new client
  id) ends there; one that vanished from both is `ComfyError`.
- `stop_prompt` takes a prompt out of ComfyUI's queue, or interrupts it if it is
  running and waits (bounded) for it to end, so its files exist before cleanup;
  it returns False if the prompt is still running after the grace period (a node
  that never checks for interrupts): the caller must then free ComfyUI otherwise.
Events of other prompts (an earlier, stopped job) are ignored. What the events
mean for progress is `progress`'s business; this module only routes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from .comfy_api import ComfyAPI, ComfyEvent, EventStreamClosed
from .errors import ComfyError, ComfyUnavailable, ExecutionFailed, PromptInterrupted, WorkerError
from .workflow import Workflow

log = logging.getLogger(__name__)

RECONNECT_ATTEMPTS = 20
RECONNECT_PAUSE_S = 0.25


def execution_error(data: dict[str, Any]) -> ExecutionFailed:
    node = f"node {data.get('node_id')} ({data.get('node_type')})"
    message = f"{node} failed: {data.get('exception_type')}: {str(data.get('exception_message', '')).strip()}"
    details = {key: data.get(key) for key in ("node_id", "node_type", "exception_type", "exception_message")}
    details["traceback"] = data.get("traceback") or []
    return ExecutionFailed(message, details)


def interrupted_error(data: dict[str, Any]) -> PromptInterrupted:
    where = f" at node {data['node_id']} ({data.get('node_type')})" if data.get("node_id") else ""
    return PromptInterrupted(f"the workflow was interrupted{where}", {"node_id": data.get("node_id")})


async def submit_prompt(comfy: ComfyAPI, workflow: Workflow, extra_data: dict[str, Any]) -> str:
    await comfy.connect_events()
    return await comfy.queue_prompt(workflow.to_prompt(), extra_data)


async def wait_for_prompt(
    comfy: ComfyAPI,
    prompt_id: str,
    on_event: Callable[[ComfyEvent], None],
    comfy_died: Callable[[], bool],
    silence_check_s: float,
) -> None:
    while True:
        try:
            await _follow_events(comfy, prompt_id, on_event, silence_check_s)
            return
        except EventStreamClosed as closed:
            log.warning("ComfyUI websocket dropped during prompt %s (%s)", prompt_id, closed)
            await _reconnect(comfy, comfy_died)
        # Events sent while the socket was down are lost: ask the history.
        if await _finished(comfy, prompt_id):
            return


async def _follow_events(
    comfy: ComfyAPI, prompt_id: str, on_event: Callable[[ComfyEvent], None], silence_check_s: float
) -> None:
    # Events are read by a task of their own; this coroutine only wakes once per
    # silent spell (no timer per event), to ask the history whether the prompt ended.
    follower = _Follower(prompt_id, on_event)
    reader = asyncio.ensure_future(follower.read(comfy.events()))
    try:
        while True:
            seen = follower.events_seen
            done, _ = await asyncio.wait({reader}, timeout=silence_check_s)
            if done:
                return reader.result()  # raises the prompt's failure, or EventStreamClosed
            if follower.events_seen == seen and await _finished(comfy, prompt_id):
                return
    finally:
        if not reader.done():
            reader.cancel()
            await asyncio.wait({reader})


class _Follower:
    """Routes one prompt's events to `on_event` until ComfyUI reports the prompt's end."""

    def __init__(self, prompt_id: str, on_event: Callable[[ComfyEvent], None]):
        self.prompt_id = prompt_id
        self.on_event = on_event
        self.events_seen = 0

    async def read(self, stream: AsyncGenerator[ComfyEvent, None]) -> None:
        # A failure is raised only at the final `executing: null`: ComfyUI records the
        # prompt in its history (and off its queue) just before sending it, and cleanup
        # reads the history.
        failure: ExecutionFailed | None = None
        try:
            async for event in stream:
                # Preview frames carry no prompt id; jobs run one at a time, so they are ours.
                if event.prompt_id != self.prompt_id and event.type != "preview_frame":
                    continue
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
        finally:
            await stream.aclose()
        raise EventStreamClosed("the event stream ended")


async def _finished(comfy: ComfyAPI, prompt_id: str) -> bool:
    """True if ComfyUI's history shows the prompt finished (raises if it failed);
    `ComfyError` if ComfyUI has forgotten it altogether."""
    entry = await comfy.history(prompt_id)
    if entry:
        return _outcome_from_history(entry)
    if _place_in_queue(await comfy.queue(), prompt_id) is not None:
        return False
    entry = await comfy.history(prompt_id)  # it may have finished between the two reads
    if entry:
        return _outcome_from_history(entry)
    raise ComfyError(f"prompt {prompt_id} vanished from ComfyUI: neither queued nor in its history")


async def _reconnect(comfy: ComfyAPI, comfy_died: Callable[[], bool]) -> None:
    for _ in range(RECONNECT_ATTEMPTS):
        if comfy_died():
            raise ComfyUnavailable("ComfyUI exited during the job (its process is gone); see its log for the cause")
        try:
            await comfy.reconnect_events()
            return
        except ComfyUnavailable:
            await asyncio.sleep(RECONNECT_PAUSE_S)
    raise ComfyUnavailable(f"ComfyUI's websocket could not be reopened after {RECONNECT_ATTEMPTS} attempts")


def _place_in_queue(queue: dict[str, Any], prompt_id: str) -> str | None:
    """ "queue_running", "queue_pending" or None: where GET /queue lists the prompt."""
    for place in ("queue_running", "queue_pending"):
        if any(item[1] == prompt_id for item in queue.get(place, [])):
            return place
    return None


def _outcome_from_history(entry: dict[str, Any]) -> bool:
    """True if the history shows the prompt finished; raises if it failed."""
    status = entry.get("status") or {}
    for name, data in status.get("messages") or []:
        if name == "execution_error":
            raise execution_error(data)
        if name == "execution_interrupted":
            raise interrupted_error(data)
    return bool(status.get("completed")) or status.get("status_str") == "success"


async def stop_prompt(comfy: ComfyAPI, prompt_id: str, grace_s: float) -> bool:
    """Free ComfyUI from this prompt: drop it if queued, interrupt it if running.
    True once it no longer runs; False if it still runs after grace_s."""
    try:
        place = _place_in_queue(await comfy.queue(), prompt_id)
        if place == "queue_pending":
            await comfy.delete_queued(prompt_id)
            return True
        if place is None:
            return True  # already finished
        await comfy.interrupt(prompt_id)
        async with asyncio.timeout(grace_s):
            await _follow_events(comfy, prompt_id, lambda event: None, silence_check_s=min(1.0, grace_s))
        return True
    except ExecutionFailed:
        return True  # it ended (interrupted, as asked, or failing on its own)
    except (WorkerError, EventStreamClosed, TimeoutError) as exc:
        log.warning("prompt %s is still running %g s after the interrupt: %s", prompt_id, grace_s, exc)
        return False
