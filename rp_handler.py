"""RunPod serverless entry point: run a job's ComfyUI workflow and return its outputs.

start.sh launches ComfyUI, then this file. `run_job` reads as the job's story;
each stage lives in the comfy_worker package. Locally:

    python rp_handler.py --test_input "$(cat test_input.json)"

Jobs run one at a time: the worker has one ComfyUI. The SDK takes one job at a
time (concurrency 1); should a second arrive anyway, it waits for the first to
finish (its progress says so) and then runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import runpod
from runpod.serverless.modules.rp_logger import RunPodLogger

from comfy_worker.comfy_process import ComfyConnection
from comfy_worker.delivery import deliver_outputs
from comfy_worker.errors import JobTimedOut, WorkerError, error_result
from comfy_worker.execution import stop_prompt, submit_prompt, tag_output_nodes, wait_for_prompt
from comfy_worker.inputs import upload_inputs
from comfy_worker.job_files import JobFiles
from comfy_worker.job_input import JobInput, parse_job_input
from comfy_worker.outputs import files_in_history, texts_in_history
from comfy_worker.progress import ProgressRelay, ProgressTracker
from comfy_worker.settings import Settings
from comfy_worker.timings import StageTimings

log = logging.getLogger("rp_handler")

settings = Settings.from_env()
_comfy: ComfyConnection | None = None
_one_job_at_a_time = asyncio.Lock()
relay_progress = True  # False in local runs, where the SDK has no URL to send progress to


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    if _one_job_at_a_time.locked():
        log.warning("job %s waits: another job is running on this worker's ComfyUI", job.get("id"))
        send_progress(job, {"status": "waiting", "message": "waiting for the worker's previous job to finish"})
    async with _one_job_at_a_time:
        return await run_job(job)


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    timings = StageTimings()
    job_files = JobFiles([settings.input_dir, settings.output_dir, settings.temp_dir])
    comfy: ComfyConnection | None = None
    prompt_id: str | None = None
    history: dict[str, Any] | None = None
    try:
        request = parse_job_input(job.get("input"), settings.job_timeout_max_s)
        with timings.stage("wait_for_comfyui_s"):
            comfy = await connect_to_comfyui()
        with timings.stage("upload_inputs_s"):
            await upload_inputs(comfy.client, request.images, settings, job_files)
        workflow = tag_output_nodes(request.workflow_dict(), comfy.output_classes, job["id"])
        tracker = ProgressTracker(workflow, request.preview, settings.progress_preview_max_bytes, timings.started_at)
        with timings.stage("execute_s"):
            prompt_id = await submit_prompt(comfy.client, workflow, extra_data(request))
            await follow_prompt(comfy, job, prompt_id, tracker, request.timeout_s or settings.job_timeout_s)
        with timings.stage("collect_outputs_s"):
            history = await comfy.client.history(prompt_id)
            files = files_in_history(history, settings, job_files)
            outputs = await asyncio.to_thread(
                deliver_outputs, files, texts_in_history(history), request.output, settings, job["id"], job_files
            )
        return {**outputs, "timings": timings.as_dict()}
    except WorkerError as error:
        log.warning("job %s failed: %s", job.get("id"), error.message)
        return error_result(error)
    finally:
        comfy_died = comfy is not None and comfy.is_alive() is False
        if comfy is not None and prompt_id is not None and not comfy_died:
            await release_prompt(comfy, prompt_id, job_files, collected=history is not None)
        job_files.remove_all()
        if comfy_died:
            await close_comfyui()  # a later job (if RunPod keeps this worker) waits for a new ComfyUI


async def follow_prompt(
    comfy: ComfyConnection, job: dict[str, Any], prompt_id: str, tracker: ProgressTracker, timeout_s: float
) -> None:
    """Relay the prompt's progress until it ends; stop it on timeout or cancel."""
    relay = ProgressRelay(lambda payload: send_progress(job, payload), settings.progress_updates_per_s)

    def on_event(event) -> None:
        must_send = tracker.apply(event)
        if must_send is not None:
            relay.offer(tracker.payload(), must_send)

    relay.offer(tracker.payload(), must_send=True)
    try:
        async with asyncio.timeout(timeout_s):
            await wait_for_prompt(comfy.client, prompt_id, on_event, comfy.is_alive)
    except TimeoutError:
        await stop_prompt(comfy.client, prompt_id, settings.stop_grace_s)
        raise JobTimedOut(
            f"the workflow ran longer than its timeout of {timeout_s:g} s and was stopped "
            "(set timeout_s in the job, or JOB_TIMEOUT_S)",
            {"timeout_s": timeout_s},
        ) from None
    except asyncio.CancelledError:
        # RunPod cancel, execution timeout or expiry: free ComfyUI, then let the SDK see it.
        log.info("job %s cancelled: stopping prompt %s", job.get("id"), prompt_id)
        await stop_prompt(comfy.client, prompt_id, settings.stop_grace_s)
        raise
    finally:
        relay.close()
    tracker.finish()
    relay.offer(tracker.payload(), must_send=True)


def send_progress(job: dict[str, Any], payload: dict[str, Any]) -> None:
    if relay_progress:
        runpod.serverless.progress_update(job, payload)
    else:
        log.info("progress %s: %s (%.0f%%)", job.get("id"), payload.get("message"), 100 * payload.get("progress", 0))


async def connect_to_comfyui() -> ComfyConnection:
    """The worker's ComfyUI connection: opened (waiting for start-up) by the first job."""
    global _comfy
    if _comfy is not None and (_comfy.loop is not asyncio.get_running_loop() or _comfy.settings is not settings):
        await close_comfyui()
    if _comfy is None:
        _comfy = await ComfyConnection.open(settings)
    _comfy.ensure_alive()
    return _comfy


async def close_comfyui() -> None:
    global _comfy
    if _comfy is not None:
        await _comfy.client.close()
        _comfy = None


def extra_data(request: JobInput) -> dict[str, Any]:
    if request.comfy_org_api_key is None:
        return {}
    return {"api_key_comfy_org": request.comfy_org_api_key.get_secret_value()}


async def release_prompt(comfy: ComfyConnection, prompt_id: str, job_files: JobFiles, collected: bool) -> None:
    """Drop the prompt from ComfyUI's history, which otherwise grows on a warm worker;
    if its outputs were not collected (a failed job), register its partial outputs
    for removal first."""
    try:
        if not collected:
            files_in_history(await comfy.client.history(prompt_id), settings, job_files)
        await comfy.client.forget_history(prompt_id)
    except WorkerError as error:
        log.warning("could not release prompt %s: %s", prompt_id, error.message)


async def handle_and_close(job: dict[str, Any]) -> dict[str, Any]:
    """Local runs (--test_input, --rp_serve_api) end the event loop after a job:
    close the connection with it instead of leaving aiohttp to complain."""
    try:
        return await handler(job)
    finally:
        await close_comfyui()


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (os.environ.get("RUNPOD_LOG_LEVEL") or os.environ.get("RUNPOD_DEBUG_LEVEL")):
        # The SDK defaults to DEBUG, which logs every job's input (API keys included)
        # and its whole base64 output.
        RunPodLogger().set_level("INFO")


def main() -> None:
    global relay_progress
    configure_logging()
    # The SDK's own rule: without the job-take URL it runs one local job, not the worker loop.
    on_runpod = bool(os.environ.get("RUNPOD_WEBHOOK_GET_JOB"))
    relay_progress = on_runpod
    runpod.serverless.start({"handler": handler if on_runpod else handle_and_close})


if __name__ == "__main__":
    main()
