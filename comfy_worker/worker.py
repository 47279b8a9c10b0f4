"""The worker: one object per process that runs jobs on one ComfyUI, one at a time.

Contract: `Worker(settings, progress)` builds nothing that needs an event loop.
`await start()` waits until ComfyUI can serve (while its process lives) and learns
its nodes (`NodeCatalog`); `await handle(job)` runs one RunPod job and always
returns a result dict, never raises (except `CancelledError`, which RunPod's
cancel must see); `await close()` closes the connections, which the next job
reopens in whatever event loop runs it.

`_run_stages` reads as the job's story: parse the input, connect, build the graph
to run (as sent, converted from the UI format, or a named workflow with its
parameters; seeds randomized if asked), check it against ComfyUI's nodes, place the
input files, submit the tagged workflow (a refused model is explained with what is
installed), follow it (progress, timeout, cancel), find its outputs, deliver them.
A `list` job answers from ComfyUI and the named workflows instead.
`run_job` around it is the one error boundary: a `WorkerError` becomes the
documented error result; anything else becomes an `internal_error` with its
traceback logged once. Clean-up steps sit on an `AsyncExitStack`, each guarded,
so every one runs even when another fails and none can replace the job's result:
release the prompt (forget its history, and on failure register its partial
outputs), remove the job's files, and drop the connection if ComfyUI died.

A prompt that ignores the interrupt of a timeout or cancel (or whose interrupt
ComfyUI does not accept) is not left to hold the GPU: the worker ends ComfyUI,
which start.sh restarts, and the next job waits for the new one; where no restart
can happen, the job's result asks for a new worker. The delivery of outputs ends at
the job's deadline too (`timeout_s` from the prompt's submit), so a stalled bucket
cannot hold a job. A history entry that could not be deleted is deleted when the
next job starts.

Jobs run one at a time: the worker has one ComfyUI. RunPod's SDK takes one job at
a time (concurrency 1); should a second arrive anyway, it waits for the first to
finish (its progress says so) and then runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from . import ui_format
from .comfy_api import ComfyAPI, ComfyEvent
from .comfy_client import ComfyClient
from .comfy_process import ComfyProcess, wait_until_ready
from .delivery import deliver_outputs, is_quick
from .errors import InternalError, InvalidJobInput, JobTimedOut, WorkerError, WorkflowRejected, error_result
from .history import files_in_history, texts_in_history
from .input_files import place_inputs
from .installed import InstalledModels, explain_missing_models, loader_inputs
from .job_files import JobFiles, JobFolders
from .job_input import InputFile, JobInput, parse_job_input
from .model_cache import ModelCache
from .named_workflows import WorkflowLibrary, WorkflowLibraryError
from .progress import Change, ProgressRelay, ProgressSink, ProgressTracker
from .prompt import stop_prompt, submit_prompt, wait_for_prompt
from .remote_models import Credentials, ModelFetcher, RemoteModel, find_remote_models, is_remote
from .settings import Settings
from .storage import OutputStore, output_store
from .timings import StageTimings
from .workflow import NodeCatalog, Workflow

log = logging.getLogger(__name__)

_NO_STORE: Any = object()
RESTARTED = ", so ComfyUI was restarted (the next job waits for it)"
STOP_FAILED = "; it may still run and ComfyUI could not be restarted, so the worker asks to be replaced"


def log_progress(job: dict[str, Any], payload: dict[str, Any]) -> None:
    """The progress sink for local runs, where there is no RunPod job to report to."""
    log.info("progress %s: %s (%.0f%%)", job.get("id"), payload.get("message"), 100 * payload.get("progress", 0))


class Worker:
    def __init__(
        self,
        settings: Settings,
        progress: ProgressSink = log_progress,
        *,
        comfy: ComfyAPI | None = None,
        store: OutputStore | None = _NO_STORE,
        process: ComfyProcess | None = None,
    ):
        """`comfy`, `store` and `process` default to what the settings describe;
        tests pass fakes (`store=None` means no bucket)."""
        self.settings = settings
        self.comfy: ComfyAPI = comfy if comfy is not None else ComfyClient(settings.comfy_http_url)
        self.store = output_store(settings) if store is _NO_STORE else store
        self.process = process if process is not None else ComfyProcess(settings.comfy_pid_file)
        self.folders = JobFolders.of(settings.comfyui_path)
        self._progress = progress
        self._nodes: NodeCatalog | None = None
        self._library: WorkflowLibrary | WorkflowLibraryError = WorkflowLibrary({})
        self._model_folders: dict[str, str] | None = None
        self.model_cache = ModelCache(settings.model_cache_dir)
        self.fetcher = ModelFetcher(settings, self.model_cache)
        self._one_job_at_a_time = asyncio.Lock()
        self._after_result: set[asyncio.Task[None]] = set()  # clean-up left off a job's critical path
        self._histories_to_forget: set[str] = set()  # history deletes that failed, tried again next job

    async def start(self) -> None:
        """Wait until ComfyUI answers, then learn its nodes and read the named workflows (once).
        The UI-format converter is imported meanwhile, while ComfyUI boots."""
        if self._nodes is not None:
            return
        importing = asyncio.ensure_future(asyncio.to_thread(ui_format.preload))
        await wait_until_ready(self.comfy, self.process, self.settings)
        object_info = await self.comfy.object_info()
        await importing
        # Downloads a worker that died mid-way left behind (none is older than the download timeout).
        await asyncio.to_thread(self.model_cache.remove_partials, self.settings.model_download_timeout_s)
        try:
            self._library = await asyncio.to_thread(WorkflowLibrary.load, self.settings.workflows_dir, object_info)
            log.info("named workflows: %s", ", ".join(self._library.workflows) or "none")
        except WorkflowLibraryError as error:
            # Jobs that send a graph still run; jobs that name a workflow get this error.
            log.error("the named workflows in %s cannot be used:\n%s", self.settings.workflows_dir, error)
            self._library = error
        self._nodes = NodeCatalog.from_object_info(object_info)

    async def close(self) -> None:
        await self.settled()
        await self.comfy.close()

    async def settled(self) -> None:
        """Wait for the clean-up the last job left for after its result (its history release)."""
        if self._after_result:
            await asyncio.gather(*self._after_result)

    async def handle(self, job: dict[str, Any]) -> dict[str, Any]:
        """The RunPod handler: run the job once the previous one has finished."""
        if self._one_job_at_a_time.locked():
            log.warning("job %s waits: another job is running on this worker's ComfyUI", job.get("id"))
            self._progress(job, {"status": "waiting", "message": "waiting for the worker's previous job to finish"})
        async with self._one_job_at_a_time:
            await self.settled()
            if self._histories_to_forget:
                await self._forget_leftover_histories()
            return await self.run_job(job)

    async def handle_then_close(self, job: dict[str, Any]) -> dict[str, Any]:
        """For runs that end their event loop after one job (--test_input, warm-up)."""
        try:
            return await self.handle(job)
        finally:
            await self.close()

    async def run_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """The error boundary and the clean-up around the job's stages."""
        job_files = JobFiles(self.folders)
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.push_async_callback(self._guarded, "drop a dead ComfyUI's connection", self._drop_if_comfy_died)
            cleanup.push_async_callback(self._guarded, "remove the job's files", _as_async(job_files.remove_all))
            try:
                result = await self._run_stages(job, job_files, cleanup)
            except WorkerError as error:
                log.warning("job %s failed: %s", job.get("id"), error.message)
                result = error_result(error)
            except Exception as exc:  # the last resort: a bug must still give a documented result
                log.exception("job %s failed with an unexpected error", job.get("id"))
                result = error_result(InternalError.from_exception(exc))
        return result

    async def _run_stages(
        self, job: dict[str, Any], job_files: JobFiles, cleanup: contextlib.AsyncExitStack
    ) -> dict[str, Any]:
        """The job's story, stage by stage."""
        job_id = str(job.get("id"))
        timings = StageTimings()
        request = self._validate(job.get("input"))
        with timings.stage("wait_for_comfyui_s"):
            nodes = await self._ready()
        if request.list_what is not None:
            return await self._answer_list(request.list_what)
        workflow, param_files, about = await self._workflow_to_run(request, nodes)
        self._check_against_comfyui(nodes, workflow)
        with timings.stage("fetch_models_s"):
            workflow = await self._fetch_remote_models(job, workflow, request, cleanup)
        with timings.stage("upload_inputs_s"):
            renames = await place_inputs([*request.images, *param_files], self.settings, job_files)
        about["seeds"] = workflow.seeds()
        # A tag of its own per run: a repeated job id must not be served from ComfyUI's cache.
        run_tag = f"{job_id}/{uuid.uuid4().hex[:8]}"
        workflow = workflow.with_files_renamed(renames).tagged(run_tag, nodes.output_classes)
        tracker = ProgressTracker(
            workflow, request.preview, self.settings.progress_preview_max_bytes, timings.started_at
        )
        timeout_s = request.timeout_s or self.settings.job_timeout_s
        with timings.stage("execute_s"):
            prompt_id = await self._submit(workflow, request.extra_data(), job_files, cleanup)
            deadline = asyncio.get_running_loop().time() + timeout_s  # for the run and the delivery
            await self._follow(job, prompt_id, tracker, timeout_s, job_files)
        with timings.stage("collect_outputs_s"):
            history = await self.comfy.history(prompt_id)
            files = files_in_history(history, self.folders)
            job_files.add_outputs(file.path for file in files if file.created_by_job)
            deliver = functools.partial(
                deliver_outputs,
                files,
                texts_in_history(history),
                request.output,
                self.store,
                self.settings.max_response_bytes,
                job_id,
                job_files,
            )
            quick = is_quick(files, request.output, self.store)
            outputs = deliver() if quick else await _deliver_by(deadline, timeout_s, deliver)
        stage_times = timings.as_dict()
        log.info("job %s done, timings %s", job_id, json.dumps(stage_times))
        return {**outputs, **about, "timings": stage_times}

    # -- the stages' glue --------------------------------------------------------

    def _validate(self, raw_input: Any) -> JobInput:
        """Everything that can be refused before ComfyUI does any work."""
        request = parse_job_input(raw_input, self.settings.job_timeout_max_s)
        if request.output.storage == "s3" and self.store is None:
            raise InvalidJobInput(
                [("input.output.storage", "is 's3' but this endpoint has no bucket (set BUCKET_ENDPOINT_URL and keys)")]
            )
        return request

    async def _workflow_to_run(
        self, request: JobInput, nodes: NodeCatalog
    ) -> tuple[Workflow, list[InputFile], dict[str, Any]]:
        """The API-format graph the job asks for, the files its parameters bring, and what
        the result says of where it came from (format or name)."""
        files: list[InputFile] = []
        if request.workflow_name is not None:
            if isinstance(self._library, WorkflowLibraryError):
                raise InvalidJobInput(
                    [("input.workflow_name", f"the worker's named workflows could not be read: {self._library}")]
                )
            named = self._library.get(request.workflow_name)
            workflow, files = named.apply(request.params)
            about: dict[str, Any] = {"workflow_name": named.name}
        elif request.ui_workflow is not None:
            # In a thread: a big graph takes the converter milliseconds.
            api = await asyncio.to_thread(ui_format.to_api_format, request.ui_workflow, nodes.object_info)
            workflow = Workflow.from_api(api)
            problems = workflow.link_problems()
            if problems:
                raise InvalidJobInput(problems)
            about = {"workflow_format": "ui"}
        else:
            assert request.workflow is not None
            workflow, about = request.workflow, {"workflow_format": "api"}
        if request.randomize_seeds:
            workflow = workflow.with_random_seeds()
        return workflow, files, about

    async def _fetch_remote_models(
        self, job: dict[str, Any], workflow: Workflow, request: JobInput, cleanup: contextlib.AsyncExitStack
    ) -> Workflow:
        """Models the workflow names by URL or hf://, from the cache or downloaded into it
        (progress: "downloading <name>: 40%"), and the inputs pointed at the cached files.
        Each file stays held until the job ends, so eviction cannot take it meanwhile."""
        if not any(is_remote(value) for node_id in workflow for value in workflow.inputs(node_id).values()):
            return workflow
        models = find_remote_models(workflow, await self._model_inputs(), self.settings.allow_pickle_models)
        loop = asyncio.get_running_loop()
        relay = ProgressRelay(functools.partial(self._progress, job), self.settings.progress_updates_per_s)
        credentials = Credentials.from_job(request.model_credentials)
        changes = {}
        done = False

        def offer(payload: dict[str, Any]) -> None:
            if not done:  # a download thread still running after a cancel reports no more
                relay.offer(payload, Change.ROUTINE)

        try:
            for model in models:

                def report(message: str, fraction: float | None, model: RemoteModel = model) -> None:
                    payload = {"status": "downloading", "message": message, "node_id": model.node_id, "progress": 0.0}
                    if fraction is not None:
                        payload["download_progress"] = round(fraction, 4)
                    loop.call_soon_threadsafe(offer, payload)  # called from the download thread

                cached = await self.fetcher.fetch(model, workflow, credentials, report)
                hold = await asyncio.to_thread(self.model_cache.hold, cached)
                cleanup.callback(hold.release)
                changes[(model.node_id, model.input)] = cached.name
        finally:
            done = True
            relay.close()
        return workflow.with_inputs(changes)

    async def _model_inputs(self) -> dict[str, str]:
        """`<class>.<input>` -> model folder, for every input that picks a model file (asked once)."""
        if self._model_folders is None:
            installed = await InstalledModels.read(self.comfy)
            assert self._nodes is not None
            inputs = loader_inputs(self._nodes.object_info, installed)
            self._model_folders = {key: entry["folder"] for key, entry in inputs.items()}
        return self._model_folders

    async def _answer_list(self, what: str) -> dict[str, Any]:
        """`{"list": "workflows"}`: the named workflows with their parameters' JSON Schemas.
        `{"list": "models"}`: each model folder's files and paths, and which loader inputs
        choose from them (asked now: files on the network volume come and go)."""
        if what == "workflows":
            if isinstance(self._library, WorkflowLibraryError):
                raise InvalidJobInput(
                    [("input.list", f"the worker's named workflows could not be read: {self._library}")]
                )
            return {"workflows": self._library.describe()}
        installed = await InstalledModels.read(self.comfy)
        return {
            "models": dict(installed.files),
            "folders": dict(installed.folders),
            "loader_inputs": loader_inputs(await self.comfy.object_info(), installed),
        }

    async def _explain_rejection(self, rejected: WorkflowRejected, workflow: Workflow) -> WorkflowRejected:
        """A refused value that is not installed, explained (see `installed.py`)."""
        if not any(error.get("type") == "value_not_in_list" for error in rejected.node_errors):
            return rejected
        assert self._nodes is not None
        return explain_missing_models(
            rejected, workflow, self._nodes.object_info, await InstalledModels.read(self.comfy)
        )

    async def _ready(self) -> NodeCatalog:
        """ComfyUI's nodes, once it is up (the first job after a bare start waits here)."""
        if self.process.is_dead():
            raise self.process.death_error()
        await self.start()
        assert self._nodes is not None
        return self._nodes

    @staticmethod
    def _check_against_comfyui(nodes: NodeCatalog, workflow: Workflow) -> None:
        """Node types this ComfyUI lacks (named with what to add), and loader inputs naming
        a file outside ComfyUI's folders (ComfyUI itself would read it)."""
        problems = workflow.unknown_node_types(nodes.object_info) or workflow.unsafe_file_inputs(nodes.file_inputs)
        if problems:
            raise InvalidJobInput(problems)

    async def _submit(
        self, workflow: Workflow, extra_data: dict[str, Any], job_files: JobFiles, cleanup: contextlib.AsyncExitStack
    ) -> str:
        """Queue the prompt and register its release. A cancel that arrives while POST /prompt
        is on its way still learns the prompt id, so the prompt is stopped, not orphaned."""
        job_files.expect_folders(self.folders.output / folder for folder in workflow.output_subfolders())
        submitting = asyncio.ensure_future(submit_prompt(self.comfy, workflow, extra_data))
        try:
            prompt_id = await asyncio.shield(submitting)
        except WorkflowRejected as rejected:
            raise await self._explain_rejection(rejected, workflow) from None
        except asyncio.CancelledError:
            try:
                prompt_id = await asyncio.wait_for(submitting, self.settings.stop_grace_s)
                await self._stop(prompt_id)
                await self._release_prompt(prompt_id, job_files)
            except Exception as exc:  # the cancel goes on; say what could not be undone
                log.warning("a prompt queued as the job was cancelled may not have been stopped: %r", exc)
            raise
        release = functools.partial(self._release_prompt, prompt_id, job_files)
        cleanup.push_async_callback(self._guarded, f"release prompt {prompt_id}", release)
        return prompt_id

    def _note_written_files(self, event: ComfyEvent, job_files: JobFiles) -> None:
        """Register the files a node reports as it finishes, so they are removed even if
        the history cannot be read later. The history stays the source of the outputs."""
        try:
            written = files_in_history({"outputs": {event.data.get("node"): event.data.get("output")}}, self.folders)
        except WorkerError:
            return  # unsafe: the history check reports it
        for file in written:
            if file.created_by_job:
                job_files.add(file.path)

    async def _follow(
        self, job: dict[str, Any], prompt_id: str, tracker: ProgressTracker, timeout_s: float, job_files: JobFiles
    ) -> None:
        """Relay the prompt's progress until it ends; stop it on timeout or cancel."""
        relay = ProgressRelay(functools.partial(self._progress, job), self.settings.progress_updates_per_s)

        def on_event(event: ComfyEvent) -> None:
            if event.type == "executed":
                self._note_written_files(event, job_files)
            change = tracker.apply(event)
            if change is not Change.NONE:
                relay.offer(tracker.payload(), change)

        relay.offer(tracker.payload(), Change.MILESTONE)
        try:
            async with asyncio.timeout(timeout_s):
                await wait_for_prompt(
                    self.comfy, prompt_id, on_event, self.process.is_dead, self.settings.event_silence_check_s
                )
        except TimeoutError:
            how, replace_worker = await self._stop(prompt_id)
            raise JobTimedOut(
                f"the workflow ran longer than its timeout of {timeout_s:g} s {how} "
                "(set timeout_s in the job, or JOB_TIMEOUT_S)",
                {"timeout_s": timeout_s},
                refresh_worker=replace_worker,
            ) from None
        except asyncio.CancelledError:
            # RunPod cancel, execution timeout or expiry: free ComfyUI, then let the SDK see it.
            log.info("job %s cancelled: stopping prompt %s", job.get("id"), prompt_id)
            await self._stop(prompt_id)
            raise
        finally:
            relay.close()
        tracker.finish()
        relay.offer(tracker.payload(), Change.MILESTONE)

    async def _stop(self, prompt_id: str) -> tuple[str, bool]:
        """Stop the prompt; if it still runs after the grace period, end ComfyUI itself
        (start.sh starts a new one) so the next job does not wait for it. Returns what
        happened, for the error, and whether the worker must be replaced (ComfyUI could
        not be restarted)."""
        stop = await stop_prompt(self.comfy, prompt_id, self.settings.stop_grace_s)
        if stop.stopped:
            return stop.describe(), False
        await self._forget_connection()
        if self.process.kill():
            return stop.describe() + RESTARTED, False
        return stop.describe() + STOP_FAILED, True

    # -- clean-up steps (each runs, whatever the others do) -----------------------

    async def _release_prompt(self, prompt_id: str, job_files: JobFiles) -> None:
        """Drop the prompt from ComfyUI's history, which otherwise grows on a warm worker,
        after registering whatever files it wrote (a failed job's partial outputs). When
        the outputs are known, the release waits until the result is out: it is one round
        trip nobody needs before then, and the next job starts only once it is done."""
        if job_files.has_outputs:
            forget = functools.partial(self._forget_history, prompt_id)
            task = asyncio.ensure_future(self._guarded("forget the prompt's history", forget))
            self._after_result.add(task)
            task.add_done_callback(self._after_result.discard)
            return
        try:
            history = await self.comfy.history(prompt_id)
            job_files.add_outputs(file.path for file in files_in_history(history, self.folders) if file.created_by_job)
        finally:
            await self._forget_history(prompt_id)

    async def _forget_history(self, prompt_id: str) -> None:
        """Delete the prompt's history entry; one that could not be deleted is tried
        again when the next job starts, so entries never pile up."""
        try:
            await self.comfy.forget_history(prompt_id)
        except BaseException:
            self._histories_to_forget.add(prompt_id)
            raise
        self._histories_to_forget.discard(prompt_id)

    async def _forget_leftover_histories(self) -> None:
        for prompt_id in list(self._histories_to_forget):
            await self._guarded(
                f"forget prompt {prompt_id}'s history again", functools.partial(self._forget_history, prompt_id)
            )

    async def _drop_if_comfy_died(self) -> None:
        if self.process.is_dead():
            await self._forget_connection()

    async def _forget_connection(self) -> None:
        """A later job (if RunPod keeps this worker) waits for a new ComfyUI and learns its nodes."""
        await self.close()
        self._nodes = None
        self._model_folders = None

    @staticmethod
    async def _guarded(what: str, step: Callable[[], Any]) -> None:
        try:
            await step()
        except WorkerError as error:
            log.warning("clean-up step failed (%s): %s", what, error.message)
        except Exception:
            log.exception("clean-up step failed (%s)", what)


async def _deliver_by(deadline: float, timeout_s: float, deliver: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Deliver in a thread, within the job's deadline: a stalled bucket must not hold the
    job past its timeout. A thread still uploading then ends at its next file, which
    the job's clean-up has removed."""
    try:
        async with asyncio.timeout_at(deadline):
            return await asyncio.to_thread(deliver)
    except TimeoutError:
        raise JobTimedOut(
            f"delivering the outputs did not finish within the job's timeout of {timeout_s:g} s: the bucket "
            "did not answer in time (set timeout_s in the job, or check BUCKET_ENDPOINT_URL and BUCKET_TIMEOUT_S)",
            {"timeout_s": timeout_s, "stage": "delivery"},
        ) from None


def _as_async(function: Callable[[], None]) -> Callable[[], Any]:
    async def call() -> None:
        function()

    return call
