"""A prompt's life on ComfyUI, for one job: submit, follow, stop, release.

Contract: `PromptRun` belongs to one job (its `JobContext`: files, progress sink,
clean-up stack, timeout) and one prompt; other jobs' prompts may wait in ComfyUI's
queue beside it.
- `submit(workflow, extra_data, explain)` queues the workflow (through the
  connection's `EventRouter`, which routes its events to it) and puts the prompt's
  release on the job's clean-up stack. A refusal is explained (`explain`: what is
  installed); a cancel that arrives while POST /prompt is on its way still learns
  the prompt id, so the prompt is stopped and released, not orphaned.
- `follow(workflow, preview)` relays the prompt's
  progress (`ProgressTracker`, throttled; latent previews if asked; its place in the
  queue while it waits) until it ends, registering the files nodes report as they
  finish (removed even if the history cannot be read later). The job's timeout counts
  from the prompt's start (the job's `deadline` is then set); on timeout it stops the prompt and
  raises `JobTimedOut` saying how the stop went; on cancel it stops it and re-raises.
  A prompt that was still queued when the worker restarted ComfyUI (to stop another
  job's hung prompt) is queued once more on the new ComfyUI.
- `stop()` dequeues the prompt or interrupts it (`prompt.stop_prompt`, which never
  touches another prompt); if it still runs after STOP_GRACE_S, the worker ends
  ComfyUI (start.sh starts a new one). It returns what happened, for the error, and
  whether the worker must be replaced.
- `release()` forgets the prompt's history entry, after registering the files a
  failed prompt wrote; when the outputs are known already, the delete waits until
  the result is out (`Histories`).

`Histories` deletes history entries so they never pile up on a warm worker: later
(after the job's result) where it can, and again when the next job starts where a
delete failed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .comfyui.comfy_api import ComfyAPI, ComfyEvent
from .comfyui.comfy_events import EventRouter, PromptEvents
from .comfyui.comfy_process import ComfyProcess
from .comfyui.history import files_in_history
from .comfyui.prompt import stop_prompt, wait_for_prompt
from .core.errors import ComfyError, ComfyUnavailable, JobTimedOut, WorkerError, WorkflowRejected, guarded
from .core.job import JobContext
from .core.job_files import JobFolders
from .core.settings import Settings
from .progress.progress import Change, ProgressRelay, ProgressTracker
from .request.workflow import Workflow

log = logging.getLogger(__name__)

RESTARTED = ", so ComfyUI was restarted (the next job waits for it)"
STOP_FAILED = "; it may still run and ComfyUI could not be restarted, so the worker asks to be replaced"

COMFY_CLOCK = {  # events whose ComfyUI timestamp marks the run's start or end
    "execution_start": "started",
    "execution_success": "ended",
    "execution_error": "ended",
    "execution_interrupted": "ended",
}

Explain = Callable[[WorkflowRejected, Workflow], Awaitable[WorkflowRejected]]


class Histories:
    def __init__(self, comfy: ComfyAPI):
        self.comfy = comfy
        self._later: set[asyncio.Task[None]] = set()  # deletes left off a job's critical path
        self._failed: set[str] = set()  # deletes that failed, tried again at the next job

    async def forget(self, prompt_id: str) -> None:
        try:
            await self.comfy.forget_history(prompt_id)
        except BaseException:
            self._failed.add(prompt_id)
            raise
        self._failed.discard(prompt_id)

    def forget_later(self, prompt_id: str) -> None:
        task = asyncio.ensure_future(guarded("forget the prompt's history", functools.partial(self.forget, prompt_id)))
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def settled(self) -> None:
        """Wait for the deletes left for after a result, and try the failed ones again."""
        if self._later:
            await asyncio.gather(*self._later)
        await self.retry_failed()

    async def retry_failed(self) -> None:
        for prompt_id in list(self._failed):
            await guarded(f"forget prompt {prompt_id}'s history again", functools.partial(self.forget, prompt_id))


class ComfyUI(Protocol):
    """What a prompt needs of this ComfyUI (`connection.ComfyConnection`)."""

    api: ComfyAPI
    process: ComfyProcess
    events: EventRouter
    restarts: int  # how many times the worker has ended ComfyUI

    async def ready(self) -> object: ...

    async def end(self) -> bool: ...


class PromptRun:
    def __init__(self, comfyui: ComfyUI, settings: Settings, histories: Histories, job: JobContext):
        self.comfyui = comfyui
        self.comfy = comfyui.api
        self.settings = settings
        self.job = job
        self.folders: JobFolders = job.files.folders
        self.job_files = job.files
        self.histories = histories
        self.prompt_id = ""
        self.events: PromptEvents | None = None
        self.started_at: float | None = None  # loop time ComfyUI began running it
        self._queued: tuple[dict[str, Any], dict[str, Any]] | None = None  # (prompt, extra_data), to resubmit
        self._submitted_at = 0.0
        self._comfy_clock: dict[str, float] = {}  # ComfyUI's own timestamps of the run (Unix seconds)
        self._outputs: dict[str, Any] = {}  # node id -> its output, from `executed` events
        self._saw_end = False  # the prompt's end event arrived: every `executed` event did too
        self._restarts_at_submit = 0
        self._resubmitted = False

    async def submit(
        self, workflow: Workflow, extra_data: dict[str, Any], explain: Explain, swaps: dict[str, str] | None = None
    ) -> str:
        """`swaps`: node classes to run in place of the workflow's (`NodeCatalog.background_savers`)."""
        self.job_files.expect_folders(self.folders.output / folder for folder in workflow.output_subfolders())
        self._queued = (workflow.to_prompt(swaps), extra_data)
        self._submitted_at = asyncio.get_running_loop().time()
        try:
            await self._queue()
        except WorkflowRejected as rejected:
            raise await explain(rejected, workflow) from None
        self.job.cleanup.push_async_callback(guarded, f"release prompt {self.prompt_id}", self.release)
        return self.prompt_id

    async def _queue(self) -> None:
        """POST /prompt, shielded: a cancel that arrives meanwhile still learns the prompt id,
        so the prompt is stopped and released, not orphaned."""
        assert self._queued is not None
        self._restarts_at_submit = self.comfyui.restarts
        submitting = asyncio.ensure_future(self.comfyui.events.submit(*self._queued))
        try:
            self.events = await asyncio.shield(submitting)
        except asyncio.CancelledError:
            try:
                self.events = await asyncio.wait_for(submitting, self.settings.stop_grace_s)
                self.prompt_id = self.events.prompt_id
                await self.stop()
                await self.release()
            except Exception as exc:  # the cancel goes on; say what could not be undone
                log.warning("a prompt queued as the job was cancelled may not have been stopped: %r", exc)
            raise
        self.prompt_id = self.events.prompt_id

    async def outputs(self) -> dict[str, Any]:
        """The prompt's outputs as its history lists them (`{"outputs": {node id: output}}`):
        from its `executed` events when its end event arrived (every `executed` did too);
        else, events having been lost (a dropped stream, a restart), from GET /history.
        Reading the history right after a prompt waits while ComfyUI collects garbage."""
        if self._saw_end:
            return {"outputs": self._outputs}
        return await self.comfy.history(self.prompt_id)

    def timings(self) -> dict[str, float]:
        """`queued_s`: how long the prompt waited behind other jobs in ComfyUI's queue;
        `comfyui_started_at` / `comfyui_ended_at`: its run by ComfyUI's own clock (Unix s)."""
        times = {f"comfyui_{name}_at": at for name, at in self._comfy_clock.items()}
        if self.started_at is not None:
            times["queued_s"] = round(self.started_at - self._submitted_at, 3)
        return times

    async def follow(self, workflow: Workflow, preview: bool) -> None:
        """Relay the prompt's progress until it ends. The job's timeout counts from the moment
        ComfyUI starts the prompt, not while it waits behind other jobs."""
        timeout_s, started_at = self.job.timeout_s, self.job.timings.started_at
        tracker = ProgressTracker(workflow, preview, self.settings.progress_preview_max_bytes, started_at)
        relay = ProgressRelay(self.job.send, self.settings.progress_updates_per_s)
        loop = asyncio.get_running_loop()

        limit = asyncio.timeout(None)  # armed when the prompt starts

        def on_event(event: ComfyEvent) -> None:
            if event.type == "execution_start":
                if self.started_at is not None:
                    return  # seen again in the queue after lost events: the first start counts
                self.started_at = loop.time()
                self.job.deadline = self.started_at + timeout_s  # the delivery shares it
                limit.reschedule(self.job.deadline)
            if event.type == "executed":
                self._note_written_files(event)
                if isinstance(event.data.get("output"), dict):
                    self._outputs[str(event.data.get("node"))] = event.data["output"]
            elif event.type == "executing" and event.data.get("node") is None and event.prompt_id == self.prompt_id:
                self._saw_end = True
            if event.type in COMFY_CLOCK and isinstance(event.data.get("timestamp"), int):
                self._comfy_clock[COMFY_CLOCK[event.type]] = event.data["timestamp"] / 1000
            change = tracker.apply(event)
            if change is not Change.NONE:
                relay.offer(tracker.payload(), change)

        relay.offer(tracker.payload(), Change.MILESTONE)
        try:
            async with limit:
                await self._wait(on_event)
        except TimeoutError:
            how, replace_worker = await self.stop()
            raise JobTimedOut(
                f"the workflow ran longer than its timeout of {timeout_s:g} s {how} "
                "(set timeout_s in the job, or JOB_TIMEOUT_S)",
                {"timeout_s": timeout_s},
                refresh_worker=replace_worker,
            ) from None
        except asyncio.CancelledError:
            # RunPod cancel, execution timeout or expiry: free ComfyUI, then let the SDK see it.
            log.info("cancelled: stopping prompt %s", self.prompt_id)
            await self.stop()
            raise
        finally:
            relay.close()
        tracker.finish()
        relay.offer(tracker.payload(), Change.MILESTONE)

    async def _wait(self, on_event: Callable[[ComfyEvent], None]) -> None:
        """Wait for the prompt's end. A prompt still queued when the worker restarted ComfyUI
        (to stop another job's hung prompt) died with that ComfyUI: it is queued once more
        on the new one."""
        while True:
            assert self.events is not None
            try:
                await wait_for_prompt(
                    self.comfy, self.events, on_event, self.comfyui.process.lost, self.settings.event_silence_check_s
                )
                return
            except (ComfyUnavailable, ComfyError) as error:
                lost = self.comfyui.restarts != self._restarts_at_submit and self.started_at is None
                if not lost or self._resubmitted:
                    raise
                log.warning(
                    "prompt %s was waiting behind a prompt that ComfyUI was restarted to stop (%s); queueing it again",
                    self.prompt_id,
                    error.message,
                )
            self.events.close()
            self._resubmitted = True
            await self.comfyui.ready()
            await self._queue()

    async def stop(self) -> tuple[str, bool]:
        assert self.events is not None
        stop = await stop_prompt(self.comfy, self.events, self.settings.stop_grace_s)
        if stop.stopped:
            return stop.describe(), False
        if await self.comfyui.end():
            return stop.describe() + RESTARTED, False
        return stop.describe() + STOP_FAILED, True

    async def release(self) -> None:
        if self.events is not None:
            self.events.close()
        if self.job_files.has_outputs:
            self.histories.forget_later(self.prompt_id)
            return
        try:
            history = await self.comfy.history(self.prompt_id)
            self.job_files.add_outputs(
                file.path for file in files_in_history(history, self.folders) if file.created_by_job
            )
        finally:
            await self.histories.forget(self.prompt_id)

    def _note_written_files(self, event: ComfyEvent) -> None:
        try:
            written = files_in_history({"outputs": {event.data.get("node"): event.data.get("output")}}, self.folders)
        except WorkerError:
            return  # unsafe: the history check reports it
        for file in written:
            if file.created_by_job:
                self.job_files.add(file.path)
