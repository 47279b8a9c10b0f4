"""The worker: one object per process that runs jobs on one ComfyUI.

Contract: `Worker(settings, progress)` builds nothing that needs an event loop.
`await start()` waits until ComfyUI can serve (while its process lives) and learns
what it offers (`ComfyCapabilities`); `await handle(job)` runs one RunPod job and
always returns a result dict, never raises (except `CancelledError`, which RunPod's
cancel must see); `await close()` closes the connections, which the next job
reopens in whatever event loop runs it.

`run_job` parses the input and binds the job's progress sink (RunPod's, plus the job's
`progress_webhook` if it gives one: `webhooks.py`). `_run_stages` reads as the job's
story: wait for ComfyUI, resolve the graph to run (`ComfyCapabilities.workflow_to_run`),
pick the bucket (the job's own `storage`, else the worker's), claim the job's
idempotency key (`SubmitRecords`: a submit sent again returns the first one's result),
fetch the models it names by URL, place the input files, record its provenance (a
`replay` runs only where it matches), tag the workflow, submit and
follow the prompt (`PromptRun`: progress, timeout, cancel), read its outputs, deliver
them by the job's deadline and record the result under the key. A `list` job answers
from the capabilities instead, a `result_of` job from its key's record. `run_job`
around it is the one error boundary: a `WorkerError` becomes the documented error
result; anything else an `internal_error` with its traceback logged once. Clean-up
steps sit on an `AsyncExitStack`, each `guarded`, so every one runs even when another
fails and none replaces the job's result: release the prompt, remove the job's files,
release an unkept key, drop the connection if ComfyUI died.

When the worker is stopped (start.sh forwards RunPod's SIGTERM; the SDK then takes no new
jobs and lets the ones in flight finish), `abandon_jobs` ends the jobs still running when
the grace period runs out: each fails as `WorkerShutDown`, its prompt interrupted by its
clean-up, so RunPod records why and ComfyUI stops working for nobody.

A prompt that ignores the interrupt of a timeout or cancel is not left to hold the
GPU: `PromptRun.stop` has the worker end ComfyUI, which start.sh restarts; the
capabilities are learned again from the new one. Where no restart can happen, the
job's result asks for a new worker.

Several jobs may be in flight at once (JOBS_IN_FLIGHT): each is prepared as soon
as it is taken and its prompt waits in ComfyUI's queue, so ComfyUI starts it the
moment the one ahead ends, and a finished job's delivery overlaps the next prompt.
Per-job state lives in the job's own objects (`JobFiles`, `PromptRun`, the progress
sink); the worker holds only what all jobs share (the connection with its event
router and capabilities, the model cache, the history janitor).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from typing import Any

from .comfyui.connection import ComfyConnection
from .core.errors import InternalError, WorkerError, WorkerShutDown, error_result, guarded
from .core.job import JobContext, Send
from .core.settings import Settings
from .models.provenance import ProvenanceKeeper, check_replay
from .models.remote_models import ModelFetcher
from .progress.progress import ProgressSink, log_progress
from .progress.webhooks import ProgressWebhook
from .prompt_run import Histories, PromptRun
from .request.job_input import JobInput, parse_job_input
from .transfer.delivery import Delivery
from .transfer.input_files import place_inputs
from .transfer.submits import SubmitRecords

log = logging.getLogger(__name__)


def also_to(first: Send, then: Send) -> Send:
    """A progress sink that gives each payload to `first`, then to `then`."""

    def send(payload: dict[str, Any]) -> None:
        first(payload)
        then(payload)

    return send


class Worker:
    def __init__(
        self,
        settings: Settings,
        progress: ProgressSink = log_progress,
        *,
        comfyui: ComfyConnection | None = None,
        delivery: Delivery | None = None,
    ):
        """`comfyui` and `delivery` default to what the settings describe (tests pass them
        with a fake ComfyUI and store)."""
        self.settings = settings
        self.comfyui = comfyui if comfyui is not None else ComfyConnection(settings)
        self.delivery = delivery if delivery is not None else Delivery.from_settings(settings)
        self.fetcher = ModelFetcher(settings)
        self.histories = Histories(self.comfyui.api)
        self.submits = SubmitRecords(settings.submit_records_dir)
        self.provenance = ProvenanceKeeper(settings)
        self._progress = progress
        self._webhooks: set[ProgressWebhook] = set()  # whose last POSTs settled() waits for
        self._in_flight: set[asyncio.Task[Any]] = set()  # the jobs' tasks, for abandon_jobs
        self._jobs_loop: asyncio.AbstractEventLoop | None = None  # the loop the jobs run in
        self._abandoned = False

    async def start(self) -> None:
        """Wait until ComfyUI serves and learn what it offers; clear downloads a dead worker left."""
        await self.comfyui.ready()
        # None is older than the download timeout: a worker that died mid-way left them.
        await asyncio.to_thread(self.fetcher.cache.remove_partials, self.settings.model_download_timeout_s)

    async def close(self) -> None:
        await self.settled()
        await self.comfyui.close()

    async def settled(self) -> None:
        """Wait for what is left for after the results: history deletes, webhooks' last POSTs."""
        await self.histories.settled()
        await asyncio.gather(*(webhook.sent() for webhook in list(self._webhooks)), return_exceptions=True)

    async def handle(self, job: dict[str, Any]) -> dict[str, Any]:
        """The RunPod handler; several jobs may run at once (JOBS_IN_FLIGHT)."""
        await self.histories.retry_failed()
        return await self.run_job(job)

    def abandon_jobs(self) -> None:
        """The grace period of a shutdown is over: every job still in flight fails as
        `WorkerShutDown`. Safe to call from a signal handler (it hands over to the jobs' loop)."""
        if self._jobs_loop is not None and not self._jobs_loop.is_closed():
            self._jobs_loop.call_soon_threadsafe(self._abandon)

    def _abandon(self) -> None:
        self._abandoned = True
        log.warning("shutting down: %d job(s) still in flight fail", len(self._in_flight))
        for task in list(self._in_flight):
            task.cancel()

    async def handle_then_close(self, job: dict[str, Any]) -> dict[str, Any]:
        """For runs that end their event loop after one job (--test_input, warm-up)."""
        try:
            return await self.handle(job)
        finally:
            await self.close()

    async def run_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """The error boundary, the clean-up and the job's reports (progress to RunPod and,
        if the job asks, to its webhook) around the job's stages."""
        job_id = str(job.get("id"))
        webhook: ProgressWebhook | None = None
        self._jobs_loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "a job runs in a task"
        self._in_flight.add(task)
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.callback(self._in_flight.discard, task)
            cleanup.push_async_callback(guarded, "drop a dead ComfyUI's connection", self.comfyui.drop_if_dead)
            try:
                has_bucket = self.delivery.store is not None
                request = parse_job_input(job.get("input"), self.settings.job_timeout_max_s, has_bucket)
                send: Send = functools.partial(self._progress, job)
                if request.progress_webhook is not None:
                    webhook = await ProgressWebhook.open(request.progress_webhook, self.settings, job_id)
                    self._webhooks.add(webhook)
                    webhook.when_sent(self._webhooks.discard)
                    send = also_to(webhook.offer, send)
                result = await self._run_stages(job_id, request, send, cleanup)
            except WorkerError as error:
                log.warning("job %s failed: %s", job_id, error.message)
                result = error_result(error)
            except asyncio.CancelledError:
                if not (self._abandoned and task.uncancel() == 0):  # RunPod's cancel, which the SDK must see
                    if webhook is not None:
                        webhook.cancelled()
                    raise
                shut_down = WorkerShutDown(
                    f"job {job_id} did not finish before the worker was shut down (RunPod stopped the worker, "
                    "e.g. scaling down, and SHUTDOWN_GRACE_S ran out); its prompt was interrupted: send the job again"
                )
                log.warning("job %s failed: %s", job_id, shut_down.message)
                result = error_result(shut_down)
            except Exception as exc:  # the last resort: a bug must still give a documented result
                log.exception("job %s failed with an unexpected error", job_id)
                result = error_result(InternalError.from_exception(exc))
        return webhook.finish(result) if webhook is not None else result

    async def _run_stages(
        self, job_id: str, request: JobInput, send: Send, cleanup: contextlib.AsyncExitStack
    ) -> dict[str, Any]:
        """The job's story, stage by stage."""
        job = JobContext(
            job_id, send, cleanup, self.comfyui.job_files(), request.timeout_s or self.settings.job_timeout_s
        )
        cleanup.push_async_callback(guarded, "remove the job's files", job.files.remove_all_async)
        with job.timings.stage("wait_for_comfyui_s"):
            comfy = await self.comfyui.ready()
        if request.list_what is not None:
            return await comfy.answer_list(request.list_what)
        if request.result_of is not None:
            return await self.submits.look_up(request.result_of, await self.delivery.store_for(request.storage))
        to_run = await comfy.workflow_to_run(request)
        if request.validate_only:
            return await comfy.check(to_run)
        job.bucket = await self.delivery.store_for(request.storage)  # the job's own, else the worker's
        submit = await self.submits.claim(request, job)  # a submit sent again runs once
        if submit.earlier_result is not None:
            return submit.earlier_result
        with job.timings.stage("fetch_models_s"):
            workflow = await self.fetcher.fetch_all(to_run.workflow, comfy.model_inputs, request.model_credentials, job)
        with job.timings.stage("upload_inputs_s"):
            renames = await place_inputs([*request.images, *to_run.files], self.settings, job)
        # Hashing a model file new to this worker takes seconds a GB: beside the run, not before it.
        provenance = asyncio.ensure_future(self.provenance.of(to_run.workflow, workflow, comfy))
        provenance.add_done_callback(lambda task: task.cancelled() or task.exception())  # read, if left
        cleanup.callback(provenance.cancel)
        if request.replay is not None:
            check_replay(request.replay, await provenance)  # runs only where it would run the same
        about = {**to_run.about, "seeds": workflow.seeds()}
        # A tag of its own per run: a repeated job id must not be served from ComfyUI's cache.
        run_tag = f"{job_id}/{uuid.uuid4().hex[:8]}"
        workflow = workflow.with_files_renamed(renames).tagged(run_tag, comfy.nodes.output_classes)
        prompt = PromptRun(self.comfyui, self.settings, self.histories, job)
        with job.timings.stage("execute_s"):
            await prompt.submit(workflow, request.extra_data(), comfy.explain, comfy.nodes.background_savers)
            await prompt.follow(workflow, request.preview)
        with job.timings.stage("collect_outputs_s"):
            outputs = await self.delivery.collect(await prompt.outputs(), request.output, job)
        stage_times = {**job.timings.as_dict(), **prompt.timings()}
        log.info("job %s done, timings %s", job_id, json.dumps(stage_times))
        result = {**outputs, **about, "provenance": await provenance, "timings": stage_times}
        await submit.keep(result)
        return result
