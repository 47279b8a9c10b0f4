"""Fixtures of the unit tests that run a `Worker` on a scripted ComfyUI (`fake_comfy.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from tests.support.fake_comfy import FakeComfy, fake_worker


@pytest.fixture
def comfyui_path(tmp_path) -> Path:
    for folder in ("input", "output", "temp"):
        (tmp_path / "comfyui" / folder).mkdir(parents=True)
    return tmp_path / "comfyui"


@pytest.fixture
def comfy(comfyui_path) -> FakeComfy:
    return FakeComfy(comfyui_path)


@pytest.fixture
def progress() -> list[dict]:
    return []


@pytest.fixture
async def make_worker(comfyui_path, comfy, progress, tmp_path):
    made: list[Worker] = []

    def make(store=None, pid_file: Path | None = None, **settings) -> Worker:
        settings = Settings(
            comfyui_path=comfyui_path,
            comfy_pid_file=tmp_path / "no-pid-file",
            workflows_dir=tmp_path / "workflows",  # none: the shipped ones need the real ComfyUI's nodes
            **settings,
        )
        process = ComfyProcess(pid_file or settings.comfy_pid_file)
        made.append(fake_worker(settings, comfy, lambda job, payload: progress.append(payload), store, process))
        return made[-1]

    yield make
    for worker in made:
        await worker.close()
