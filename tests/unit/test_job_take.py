"""comfy_worker/core/job_take.py: the SDK's job loop asks for the next job the moment a slot
frees (it slept a whole second) and starts a taken job at once (it looked every 0.1 s), keeps
the SDK's take, and start-up refuses an SDK whose loops changed. No timed assertion: the SDK's
pauses are made an hour, so only the events can wake the loops, and a wait is bound only by
what a hang reaches."""

from __future__ import annotations

import asyncio

import pytest

from comfy_worker.core import job_take, runpod_sdk

HANG_S = 60


class Progress(list):
    """The SDK's JobsProgress: the jobs taken and not yet finished."""

    def add(self, job: dict) -> None:
        self.append(job)


class StandInScaler:
    """The SDK's JobScaler as job_take uses it: one slot, taken; a fetcher that records."""

    def __init__(self) -> None:
        self.current_concurrency = 1
        self.running = 1  # the slot is taken
        self.asked: list[int] = []
        self.jobs_queue: asyncio.Queue[dict] = asyncio.Queue()
        self.job_progress = Progress()
        self.jobs_fetcher_timeout = 90
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive

    async def set_scale(self) -> None:
        return None

    def current_occupancy(self) -> int:
        return self.running + self.jobs_queue.qsize()

    async def jobs_fetcher(self, session: object, jobs_needed: int) -> list[dict]:
        self.asked.append(jobs_needed)
        self.alive = False  # one take is the test
        return [{"id": "next"}]

    async def handle_job(self, session: object, job: dict) -> None:
        self.running -= 1  # as the SDK's finally: the job leaves its bookkeeping


async def test_a_freed_slot_wakes_the_take_at_once(monkeypatch):
    monkeypatch.setattr(job_take, "FULL_WAIT_S", 3600)  # the SDK's pause: only the signal can wake it
    monkeypatch.setattr(runpod_sdk, "JobScaler", type("Scaler", (StandInScaler,), {}))
    job_take.take_jobs_when_a_slot_frees()
    scaler = runpod_sdk.JobScaler()

    loop = asyncio.create_task(scaler.get_jobs(None))
    await asyncio.sleep(0.05)
    assert scaler.asked == [], "a full worker asks for nothing"
    assert not loop.done(), "a full worker asks for nothing"
    await scaler.handle_job(None, {"id": "first"})  # the job ends: its slot frees
    async with asyncio.timeout(HANG_S):
        await loop
    assert scaler.asked == [1], "asked for one job, through the SDK's own fetcher"
    assert scaler.job_progress == [{"id": "next"}]
    assert scaler.jobs_queue.get_nowait() == {"id": "next"}


async def test_a_too_many_requests_answer_backs_off_as_the_sdk_does(monkeypatch):
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    class Refused(StandInScaler):
        async def jobs_fetcher(self, session: object, jobs_needed: int) -> list[dict]:
            self.alive = False
            raise runpod_sdk.TooManyRequests(None, (), status=429)  # type: ignore[arg-type]

    scaler = Refused()
    scaler.running = 0
    monkeypatch.setattr(job_take.asyncio, "sleep", sleep)
    async with asyncio.timeout(HANG_S):
        await job_take.get_jobs(scaler, None)
    assert job_take.TOO_MANY_REQUESTS_BACKOFF_S in slept


class RunningScaler:
    """The SDK's JobScaler as run_jobs uses it: two slots, a queue of taken jobs, and a
    `handle_job` that runs until the test lets each job end."""

    def __init__(self) -> None:
        self.current_concurrency = 2
        self.jobs_queue: asyncio.Queue[dict] = asyncio.Queue()
        self.jobs_tasks: dict[str, asyncio.Task] = {}
        self.started: list[str] = []
        self.finish: dict[str, asyncio.Event] = {}
        self.moved = asyncio.Event()  # a job started
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive

    async def handle_job(self, session: object, job: dict) -> None:
        self.started.append(job["id"])
        self.finish[job["id"]] = asyncio.Event()
        self.moved.set()
        try:
            await self.finish[job["id"]].wait()
        finally:
            self.jobs_queue.task_done()
            self.jobs_tasks.pop(job["id"], None)


async def wait_for(scaler: RunningScaler, started: list[str]) -> None:
    """Until the jobs started are `started`, within a bound only a hang reaches."""
    async with asyncio.timeout(HANG_S):
        while scaler.started != started:
            scaler.moved.clear()
            await scaler.moved.wait()


async def test_a_taken_job_starts_at_once_while_another_runs_not_at_the_next_poll(monkeypatch):
    monkeypatch.setattr(job_take, "ALIVE_CHECK_S", 3600)  # the SDK's 0.1 s poll made an hour: only events wake it
    scaler = RunningScaler()
    loop = asyncio.create_task(job_take.run_jobs(scaler, None))
    await scaler.jobs_queue.put({"id": "a"})
    await wait_for(scaler, ["a"])  # the first job starts when it arrives

    await scaler.jobs_queue.put({"id": "b"})  # arrives while "a" runs
    await wait_for(scaler, ["a", "b"])  # the second starts at once beside it
    assert set(scaler.jobs_tasks) == {"a", "b"}, "the SDK can cancel each through jobs_tasks"

    await scaler.jobs_queue.put({"id": "c"})  # both slots taken: it waits for one to end
    for _ in range(100):
        await asyncio.sleep(0)
    assert scaler.started == ["a", "b"], "no third job while two are in flight"
    scaler.finish["a"].set()
    await wait_for(scaler, ["a", "b", "c"])  # the job waiting starts as a slot frees

    scaler.alive = False  # the worker stops: the running jobs finish, then the loop ends
    scaler.finish["b"].set()
    scaler.finish["c"].set()
    async with asyncio.timeout(HANG_S):
        await loop
    assert scaler.jobs_queue.empty()
    assert scaler.jobs_tasks == {}


async def test_a_stopping_worker_ends_the_loop_and_takes_nothing_more(monkeypatch):
    monkeypatch.setattr(job_take, "ALIVE_CHECK_S", 0)
    scaler = RunningScaler()
    loop = asyncio.create_task(job_take.run_jobs(scaler, None))
    for _ in range(10):
        await asyncio.sleep(0)
    scaler.alive = False
    async with asyncio.timeout(HANG_S):
        await loop
    await scaler.jobs_queue.put({"id": "late"})
    assert scaler.started == []
    assert scaler.jobs_queue.get_nowait() == {"id": "late"}, "the cancelled wait took nothing from the queue"


def test_an_sdk_whose_job_loop_changed_fails_start_up_naming_it(monkeypatch):
    class ChangedScaler(StandInScaler):
        async def handle_job(self, session: object, job: dict, attempt: int) -> None:  # type: ignore[override]
            return None

    import runpod.serverless.modules.rp_scale as rp_scale

    monkeypatch.setattr(rp_scale, "JobScaler", ChangedScaler)
    with pytest.raises(runpod_sdk.SDKMismatch) as info:
        runpod_sdk.check()
    assert "JobScaler.handle_job(session, job)" in str(info.value)
    assert "runpod 1.12.0" in str(info.value)


def test_the_installed_sdk_has_the_loop_job_take_was_written_against():
    assert runpod_sdk._changed_methods(runpod_sdk.JobScaler) == []


async def test_with_no_slot_a_taken_job_waits_and_the_loop_still_stops(monkeypatch):
    monkeypatch.setattr(job_take, "ALIVE_CHECK_S", 0)
    scaler = RunningScaler()
    scaler.current_concurrency = 0  # the SDK's concurrency_modifier may answer 0
    await scaler.jobs_queue.put({"id": "held"})
    loop = asyncio.create_task(job_take.run_jobs(scaler, None))
    for _ in range(10):
        await asyncio.sleep(0)
    assert scaler.started == [], "no slot: nothing starts"
    scaler.current_concurrency = 1
    await wait_for(scaler, ["held"])
    scaler.alive = False
    scaler.finish["held"].set()
    async with asyncio.timeout(HANG_S):
        await loop
