"""Shared fixtures: one real ComfyUI per test run (started only by the tests that ask
for it), and a worker pointed at it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from tests.support.comfyui_server import ComfyServer, start_comfyui


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath) or "reliability" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


class CapturedProgress:
    """A progress sink keeping every update as RunPod would receive it (JSON)."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def __call__(self, job: dict[str, Any], payload: dict[str, Any]) -> None:
        self.updates.append(json.loads(json.dumps(payload)))


class JobRunner:
    """Runs jobs through a worker's handler, as RunPod calls it. `use_settings` switches
    to a worker of its own with extra settings (environment names), closed after the test."""

    def __init__(self, worker: Worker, comfyui: ComfyServer, progress: CapturedProgress):
        self.worker = worker
        self._comfyui = comfyui
        self._progress = progress
        self._own_workers: list[Worker] = []

    async def __call__(self, job_input: Any, job_id: str | None = None) -> dict[str, Any]:
        return await self.worker.handle({"id": job_id or f"test-{uuid.uuid4().hex[:8]}", "input": job_input})

    def use_settings(self, **env: str) -> Settings:
        settings = Settings.from_env({**self._comfyui.env(), **env})
        self.worker = Worker(settings, self._progress)
        self._own_workers.append(self.worker)
        return settings

    async def close(self) -> None:
        for worker in self._own_workers:
            await worker.close()


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory) -> ComfyServer:
    server = start_comfyui(tmp_path_factory.mktemp("comfyui-base"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker_settings(comfyui: ComfyServer) -> Settings:
    return Settings.from_env(comfyui.env())


@pytest.fixture(scope="session")
def captured_progress() -> CapturedProgress:
    return CapturedProgress()


@pytest.fixture(scope="session")
async def session_worker(worker_settings, captured_progress) -> Worker:
    """One worker for the run, as on RunPod: its connections stay open between jobs."""
    worker = Worker(worker_settings, captured_progress)
    await worker.start()
    yield worker
    await worker.close()


@pytest.fixture
def progress(captured_progress) -> list[dict[str, Any]]:
    """Every progress update of this test's jobs."""
    captured_progress.updates.clear()
    return captured_progress.updates


@pytest.fixture
async def run_job(session_worker, comfyui, captured_progress, progress) -> JobRunner:
    runner = JobRunner(session_worker, comfyui, captured_progress)
    yield runner
    await runner.close()


@pytest.fixture
def use_settings(run_job):
    """Point this test's jobs at a worker with extra settings (environment names)."""
    return run_job.use_settings


@pytest.fixture
async def clean_after(comfyui):
    """The test's jobs must leave input/, output/ and temp/ as they found them."""
    before = comfyui.job_files()
    yield
    assert comfyui.job_files() == before, "a job left files behind"
