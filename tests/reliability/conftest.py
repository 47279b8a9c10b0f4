"""The reliability suite's shared checks: after every case, the same worker serves the
next job, and ComfyUI's folders hold exactly what they held before."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_worker.settings import Settings
from comfy_worker.worker import Worker
from tests.support.fault_proxy import FaultProxy
from tests.support.workflows import decode_image, empty_image


def job_tree(base_dir: Path) -> set[Path]:
    """Files and folders in input/, output/ and temp/."""
    return {path for folder in ("input", "output", "temp") for path in (base_dir / folder).rglob("*")}


async def assert_serves_next_job(worker: Worker) -> None:
    result = await worker.handle({"id": "next-job", "input": {"workflow": empty_image(color=0x0B0C0D)}})
    assert "error" not in result, f"the next job failed: {result}"
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (11, 12, 13)


@pytest.fixture
async def then_healthy(session_worker, comfyui):
    """After the test: the next job succeeds on the worker and nothing was left or removed."""
    (comfyui.base_dir / "input").mkdir(exist_ok=True)
    before = job_tree(comfyui.base_dir)
    yield
    await assert_serves_next_job(session_worker)
    assert job_tree(comfyui.base_dir) == before


@pytest.fixture
async def proxy(comfyui):
    """A fault-injecting proxy in front of the test ComfyUI."""
    fault_proxy = await FaultProxy.start(comfyui.host)
    yield fault_proxy
    await fault_proxy.close()


@pytest.fixture
async def proxied_worker(comfyui, proxy, captured_progress):
    """A worker that reaches ComfyUI through the proxy; files and liveness are the real ones."""
    env = {**comfyui.env(), "COMFY_HOST": proxy.host, "EVENT_SILENCE_CHECK_S": "1", "STOP_GRACE_S": "2"}
    worker = Worker(Settings.from_env(env), captured_progress)
    await worker.start()
    (comfyui.base_dir / "input").mkdir(exist_ok=True)
    before = job_tree(comfyui.base_dir)
    yield worker
    proxy.clear()
    await assert_serves_next_job(worker)
    assert job_tree(comfyui.base_dir) == before
    await worker.close()
