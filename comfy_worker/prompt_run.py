"""A prompt's life on ComfyUI, for one job: submit, follow, stop, release.

Contract: `PromptRun` belongs to one job (its files, its progress sink) and one
prompt.
- `submit(workflow, extra_data, explain, cleanup)` queues the workflow and puts the
  prompt's release on the job's clean-up stack. A refusal is explained (`explain`:
  what is installed); a cancel that arrives while POST /prompt is on its way still
  learns the prompt id, so the prompt is stopped and released, not orphaned.
- `follow(workflow, preview, started_at, send, timeout_s)` relays the prompt's
  progress (`ProgressTracker`, throttled; latent previews if asked) until it ends,
  registering the files nodes report as they finish (removed even if the history
  cannot be read later). On timeout it stops the prompt and raises `JobTimedOut`
  saying how the stop went; on cancel it stops it and re-raises.
- `stop()` interrupts or dequeues the prompt (`prompt.stop_prompt`); if it still
  runs after STOP_GRACE_S, `end_comfyui` ends ComfyUI (start.sh starts a new one).
  It returns what happened, for the error, and whether the worker must be replaced.
- `release()` forgets the prompt's history entry, after registering the files a
  failed prompt wrote; when the outputs are known already, the delete waits until
  the result is out (`Histories`).

`Histories` deletes history entries so they never pile up on a warm worker: later
(after the job's result) where it can, and again when the next job starts where a
delete failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .comfy_api import ComfyAPI, ComfyEvent
from .comfy_process import ComfyProcess
from .errors import JobTimedOut, WorkerError, WorkflowRejected, guarded
from .history import files_in_history
from .job_files import JobFiles, JobFolders
from .progress import Change, ProgressRelay, ProgressTracker
from .prompt import stop_prompt, submit_prompt, wait_for_prompt
from .settings import Settings
from .workflow import Workflow

log = logging.getLogger(__name__)

RESTARTED = ", so ComfyUI was restarted (the next job waits for it)"
STOP_FAILED = "; it may still run and ComfyUI could not be restarted, so the worker asks to be replaced"

Explain = Callable[[WorkflowRejected, Workflow], Awaitable[WorkflowRejected]]
Send = Callable[[dict[str, Any]], None]


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
        for prompt_id in list(self._failed):
            await guarded(f"forget prompt {prompt_id}'s history again", functools.partial(self.forget, prompt_id))


class PromptRun:
    def __init__(
        self,
        comfy: ComfyAPI,
        process: ComfyProcess,
        settings: Settings,
        job_files: JobFiles,
        histories: Histories,
        end_comfyui: Callable[[], Awaitable[bool]],
    ):
        """`end_comfyui` ends a ComfyUI that ignores the interrupt; True when a new one will start."""
        self.comfy = comfy
        self.process = process
        self.settings = settings
        self.folders: JobFolders = job_files.folders
        self.job_files = job_files
        self.histories = histories
        self.end_comfyui = end_comfyui
        self.prompt_id = ""

    async def submit(
        self, workflow: Workflow, extra_data: dict[str, Any], explain: Explain, cleanup: contextlib.AsyncExitStack
    ) -> str:
        self.job_files.expect_folders(self.folders.output / folder for folder in workflow.output_subfolders())
        submitting = asyncio.ensure_future(submit_prompt(self.comfy, workflow, extra_data))
        try:
            self.prompt_id = await asyncio.shield(submitting)
        except WorkflowRejected as rejected:
            raise await explain(rejected, workflow) from None
        except asyncio.CancelledError:
            try:
                self.prompt_id = await asyncio.wait_for(submitting, self.settings.stop_grace_s)
                await self.stop()
                await self.release()
            except Exception as exc:  # the cancel goes on; say what could not be undone
                log.warning("a prompt queued as the job was cancelled may not have been stopped: %r", exc)
            raise
        cleanup.push_async_callback(guarded, f"release prompt {self.prompt_id}", self.release)
        return self.prompt_id

    async def follow(self, workflow: Workflow, preview: bool, started_at: float, send: Send, timeout_s: float) -> None:
        tracker = ProgressTracker(workflow, preview, self.settings.progress_preview_max_bytes, started_at)
        relay = ProgressRelay(send, self.settings.progress_updates_per_s)

        def on_event(event: ComfyEvent) -> None:
            if event.type == "executed":
                self._note_written_files(event)
            change = tracker.apply(event)
            if change is not Change.NONE:
                relay.offer(tracker.payload(), change)

        relay.offer(tracker.payload(), Change.MILESTONE)
        try:
            async with asyncio.timeout(timeout_s):
                await wait_for_prompt(
                    self.comfy, self.prompt_id, on_event, self.process.is_dead, self.settings.event_silence_check_s
                )
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

    async def stop(self) -> tuple[str, bool]:
        stop = await stop_prompt(self.comfy, self.prompt_id, self.settings.stop_grace_s)
        if stop.stopped:
            return stop.describe(), False
        if await self.end_comfyui():
            return stop.describe() + RESTARTED, False
        return stop.describe() + STOP_FAILED, True

    async def release(self) -> None:
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
