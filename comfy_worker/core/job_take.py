"""When the worker asks RunPod for jobs and starts them: the moment a slot frees or a job
arrives, not up to a second (or a tenth of one) later.

The SDK's job loops (`JobScaler`, runpod 1.12.0) poll: `get_jobs` sleeps a whole second
whenever its JOBS_IN_FLIGHT slots are full, and `run_jobs` looks at its queue of taken
jobs every 0.1 s, so a prompt that ends within that time leaves ComfyUI, and the GPU,
idle until the loops wake. `take_jobs_when_a_slot_frees()` replaces those two waits and
nothing else: `get_jobs` waits for "a job finished" (an event the SDK's own `handle_job`
sets as it ends, in its `finally`), bounded by the SDK's second so a slot freed any other
way is still seen; `run_jobs` waits for whichever comes first of a job in the queue and
a running job's end. The take itself stays the SDK's: its `jobs_fetcher` request
(RunPod's job-take), its queue, its `handle_job` and `JobsProgress` bookkeeping, its 5 s
back-off on HTTP 429 and its timeout. Installed once, before `runpod.serverless.start`;
every name it relies on is in `runpod_sdk._NAMES`, so `runpod_sdk.check()` fails start-up
on an SDK whose loops are not the ones this was written against.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import runpod_sdk

log = logging.getLogger(__name__)

FULL_WAIT_S = 1.0  # the SDK's own pause when full: the bound of the wait for a free slot
TOO_MANY_REQUESTS_BACKOFF_S = 5.0  # the SDK's debounce after HTTP 429
ALIVE_CHECK_S = 0.1  # how often run_jobs looks whether the worker is stopping, as the SDK's loop


def slot_freed(scaler: Any) -> asyncio.Event:
    """The scaler's "a job finished" event, made in the running loop on first use."""
    event: asyncio.Event | None = getattr(scaler, "_comfy_slot_freed", None)
    if event is None:
        event = scaler._comfy_slot_freed = asyncio.Event()
    return event


async def get_jobs(scaler: Any, session: Any) -> None:
    """The SDK's `JobScaler.get_jobs`, waiting for a free slot instead of sleeping a second."""
    while scaler.is_alive():
        await scaler.set_scale()
        jobs_needed = scaler.current_concurrency - scaler.current_occupancy()
        if jobs_needed <= 0:
            freed = slot_freed(scaler)
            freed.clear()
            if scaler.current_concurrency - scaler.current_occupancy() <= 0:  # not freed meanwhile
                try:
                    await asyncio.wait_for(freed.wait(), timeout=FULL_WAIT_S)
                except TimeoutError:
                    pass
            continue
        try:
            acquired = await asyncio.wait_for(
                scaler.jobs_fetcher(session, jobs_needed), timeout=scaler.jobs_fetcher_timeout
            )
            for job in acquired or []:
                await scaler.jobs_queue.put(job)
                scaler.job_progress.add(job)
            if acquired:
                log.info("jobs in queue: %d", scaler.jobs_queue.qsize())
        except runpod_sdk.TooManyRequests:
            await asyncio.sleep(TOO_MANY_REQUESTS_BACKOFF_S)
        except TimeoutError:
            log.debug("job take timed out; asking again")
        except Exception as error:  # as the SDK's loop: log it and keep asking
            log.error("failed to get a job: %s: %s", type(error).__name__, error)
        finally:
            await asyncio.sleep(0)


async def run_jobs(scaler: Any, session: Any) -> None:
    """The SDK's `JobScaler.run_jobs`: start each taken job while a slot is free, waking
    when a job arrives or one ends instead of every 0.1 s; at the end, let the running
    jobs finish and log any that failed."""
    running: set[asyncio.Task[None]] = set()
    arrival: asyncio.Task[dict[str, Any]] | None = None
    try:
        while scaler.is_alive() or not scaler.jobs_queue.empty() or arrival is not None:
            if arrival is not None and arrival.done():
                running.add(_start(scaler, session, arrival.result()))
                arrival = None
            while len(running) < scaler.current_concurrency and not scaler.jobs_queue.empty():
                running.add(_start(scaler, session, scaler.jobs_queue.get_nowait()))
            if arrival is None and len(running) < scaler.current_concurrency:
                arrival = asyncio.create_task(scaler.jobs_queue.get())
            waiting = running | ({arrival} if arrival is not None else set())
            if not waiting:  # no slot at all (a concurrency of 0): nothing to wait on but time
                await asyncio.sleep(ALIVE_CHECK_S)
                continue
            done, _ = await asyncio.wait(waiting, timeout=ALIVE_CHECK_S, return_when=asyncio.FIRST_COMPLETED)
            for ended in done & running:
                if not ended.cancelled():
                    ended.exception()  # the SDK's handle_job logged it; retrieved, so asyncio does not again
            running -= done
            if arrival is not None and not arrival.done() and not scaler.is_alive():
                arrival.cancel()  # a queue's get cancelled before it returns takes nothing from it
                arrival = None
    finally:
        if arrival is not None and not arrival.done():
            arrival.cancel()
    for outcome in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.error("a job failed while the worker stopped: %s: %s", type(outcome).__name__, outcome)


def _start(scaler: Any, session: Any, job: dict[str, Any]) -> asyncio.Task[None]:
    task = asyncio.create_task(scaler.handle_job(session, job))
    scaler.jobs_tasks[job["id"]] = task  # the SDK cancels a job through it
    return task


def take_jobs_when_a_slot_frees() -> None:
    """Installs `get_jobs` and `run_jobs` on the SDK's JobScaler, and the "a job finished"
    signal on its `handle_job`. Idempotent."""
    scaler_class = runpod_sdk.JobScaler
    if getattr(scaler_class, "_comfy_takes_on_free_slot", False):
        return
    sdk_handle_job = scaler_class.handle_job

    async def handle_job(self: Any, session: Any, job: dict[str, Any]) -> None:
        try:
            await sdk_handle_job(self, session, job)
        finally:  # after the SDK's own finally: the job is out of its bookkeeping
            slot_freed(self).set()

    scaler_class.handle_job = handle_job
    scaler_class.get_jobs = get_jobs
    scaler_class.run_jobs = run_jobs
    scaler_class._comfy_takes_on_free_slot = True
