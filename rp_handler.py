"""RunPod serverless entry point: the worker's lifecycle, nothing else.

start.sh launches ComfyUI, then this file, which configures logging, reads the
settings, builds the worker, waits until ComfyUI can serve (so a slow boot never
eats a job's clock), and only then starts RunPod's SDK with the worker's handler.
The job itself is `comfy_worker.worker.Worker.run_job`. Locally:

    python rp_handler.py --test_input "$(cat test_input.json)"
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import runpod

from comfy_worker.core import job_take, runpod_sdk
from comfy_worker.core.errors import WorkerError
from comfy_worker.core.settings import Settings
from comfy_worker.progress.progress import ProgressSink, log_progress
from comfy_worker.progress.runpod_progress import OrderedProgress, post_to_runpod
from comfy_worker.warmup import WARMUP_JOB_ID, warm_up
from comfy_worker.worker import Worker

log = logging.getLogger("rp_handler")


def configure_logging() -> None:
    # force: importing the SDK's upload helpers has already configured logging its own way.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if not (os.environ.get("RUNPOD_LOG_LEVEL") or os.environ.get("RUNPOD_DEBUG_LEVEL")):
        # The SDK defaults to DEBUG, which logs every job's input (API keys included)
        # and its whole base64 output.
        runpod_sdk.RunPodLogger().set_level("INFO")


async def wait_for_comfyui(worker: Worker) -> None:
    """Block until ComfyUI serves, then run the warm-up job (WARMUP_JOB) if there is one.
    A ComfyUI that died during start-up is not fatal here: the SDK still starts, and
    each job then fails at once with ComfyUI's death as its error (and asks RunPod
    for a new worker), which users see in /status."""
    try:
        await worker.start()
        log.info("worker ready: ComfyUI answers")
        if worker.settings.warmup_job is not None:
            await warm_up(worker.settings.warmup_job, worker)
    except WorkerError as error:
        log.error("ComfyUI is not available: %s", error.message)
    finally:
        await worker.close()  # the SDK runs jobs in an event loop of its own; the first job reconnects


def except_warmup(sink: ProgressSink) -> ProgressSink:
    """The warm-up job is the worker's own: its progress goes to the log, not to RunPod."""

    def send(job: dict[str, Any], payload: dict[str, Any]) -> None:
        (log_progress if job.get("id") == WARMUP_JOB_ID else sink)(job, payload)

    return send


def main() -> None:
    runpod_sdk.check()  # an SDK without the names the worker uses fails here, not in a job
    configure_logging()
    settings = Settings.from_env()
    # The SDK's own rule: without the job-take URL it runs one local job, not the worker loop.
    on_runpod = bool(os.environ.get("RUNPOD_WEBHOOK_GET_JOB"))
    worker = Worker(settings, progress=except_warmup(OrderedProgress(post_to_runpod())) if on_runpod else log_progress)
    asyncio.run(wait_for_comfyui(worker))
    if not on_runpod:
        runpod.serverless.start({"handler": worker.handle_then_close})
        return
    # Shutdown (start.sh): SIGTERM goes to the SDK, which takes no more jobs and lets those in
    # flight finish; SIGUSR1 follows when the grace period runs out, and fails what is left.
    signal.signal(signal.SIGUSR1, lambda signum, frame: worker.abandon_jobs())
    # Up to JOBS_IN_FLIGHT jobs at once: the next is prepared and queued in ComfyUI
    # while the current one runs (comfy_worker/worker.py).
    jobs_in_flight = settings.jobs_in_flight
    job_take.take_jobs_when_a_slot_frees()  # the next job the moment one ends (comfy_worker/core/job_take.py)
    runpod.serverless.start({"handler": worker.handle, "concurrency_modifier": lambda current: jobs_in_flight})


if __name__ == "__main__":
    main()
