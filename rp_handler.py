"""RunPod serverless entry point: run a job's ComfyUI workflow and return its outputs.

start.sh launches ComfyUI, then this file. The handler reads as the job's story;
each stage lives in the comfy_worker package. Locally:

    python rp_handler.py --test_input "$(cat test_input.json)"
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import runpod
from runpod.serverless.modules.rp_logger import RunPodLogger

from comfy_worker.comfy_process import ComfyConnection
from comfy_worker.errors import WorkerError, error_result
from comfy_worker.execution import submit_prompt, tag_output_nodes, wait_for_prompt
from comfy_worker.inputs import upload_inputs
from comfy_worker.job_files import JobFiles
from comfy_worker.job_input import JobInput, parse_job_input
from comfy_worker.outputs import encode_outputs, files_in_history
from comfy_worker.settings import Settings

log = logging.getLogger("rp_handler")

settings = Settings.from_env()
_comfy: ComfyConnection | None = None


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    job_files = JobFiles([settings.input_dir, settings.output_dir, settings.temp_dir])
    comfy: ComfyConnection | None = None
    prompt_id: str | None = None
    history: dict[str, Any] | None = None
    try:
        request = parse_job_input(job.get("input"))
        comfy = await connect_to_comfyui()
        await upload_inputs(comfy.client, request.images, settings, job_files)
        workflow = tag_output_nodes(request.workflow_dict(), comfy.output_classes, job["id"])
        prompt_id = await submit_prompt(comfy.client, workflow, extra_data(request))
        await wait_for_prompt(comfy.client, prompt_id)
        history = await comfy.client.history(prompt_id)
        images = await encode_outputs(files_in_history(history, settings, job_files))
        return {"images": images}
    except WorkerError as error:
        log.warning("job %s failed: %s", job.get("id"), error.message)
        return error_result(error)
    finally:
        if comfy is not None and prompt_id is not None:
            await release_prompt(comfy, prompt_id, job_files, collected=history is not None)
        job_files.remove_all()


async def connect_to_comfyui() -> ComfyConnection:
    """The worker's ComfyUI connection: opened (waiting for start-up) by the first job."""
    global _comfy
    if _comfy is None or _comfy.loop is not asyncio.get_running_loop() or _comfy.settings is not settings:
        _comfy = await ComfyConnection.open(settings)
    _comfy.ensure_alive()
    return _comfy


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


async def close_comfyui() -> None:
    global _comfy
    if _comfy is not None:
        await _comfy.client.close()
        _comfy = None


async def handle_and_close(job: dict[str, Any]) -> dict[str, Any]:
    """Local runs (--test_input, --rp_serve_api) end the event loop after a job:
    close the connection with it instead of leaving aiohttp to complain."""
    try:
        return await handler(job)
    finally:
        await close_comfyui()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (os.environ.get("RUNPOD_LOG_LEVEL") or os.environ.get("RUNPOD_DEBUG_LEVEL")):
        # The SDK defaults to DEBUG, which logs every job's input (API keys included)
        # and its whole base64 output.
        RunPodLogger().set_level("INFO")
    # The SDK's own rule: without the job-take URL it runs one local job, not the worker loop.
    on_runpod = bool(os.environ.get("RUNPOD_WEBHOOK_GET_JOB"))
    runpod.serverless.start({"handler": handler if on_runpod else handle_and_close})


if __name__ == "__main__":
    main()
