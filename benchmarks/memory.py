"""Memory and leftovers on a warm worker: idle, then after N jobs.

The worker (in this process) and ComfyUI run N jobs, alternating the model-free
workflow and the tiny txt2img. Before and after: the worker process's RSS,
ComfyUI's RSS, ComfyUI's history length, and the files in input/, output/, temp/.
A warm worker must not grow: the history and the folders end where they began.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass

import psutil

from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from tests.support.comfyui_server import ComfyServer
from tests.support.workflows import empty_image, txt2img


@dataclass
class Snapshot:
    worker_rss_mb: float
    comfy_rss_mb: float
    history_entries: int
    job_files: int


def history_length(host: str) -> int:
    with urllib.request.urlopen(f"http://{host}/history") as response:
        return len(json.load(response))


async def snapshot(worker: Worker, server: ComfyServer) -> Snapshot:
    history = await asyncio.to_thread(history_length, server.host)
    return Snapshot(
        worker_rss_mb=psutil.Process().memory_info().rss / 1e6,
        comfy_rss_mb=psutil.Process(server.process.pid).memory_info().rss / 1e6,
        history_entries=history,
        job_files=len(server.job_files()),
    )


async def measure(server: ComfyServer, jobs: int) -> tuple[Snapshot, Snapshot, Snapshot]:
    """(idle, after the first 20 jobs, after all N): the first jobs load models and fill caches."""
    worker = Worker(Settings.from_env(server.env()), progress=lambda job, payload: None)
    await worker.start()
    idle = await snapshot(worker, server)
    warmed = idle
    for i in range(jobs):
        workflow = empty_image(color=i + 1) if i % 2 else txt2img(steps=2, size=64, seed=5000 + i)
        result = await worker.handle({"id": f"memory-{i}", "input": {"workflow": workflow}})
        assert "error" not in result, result
        if i == 19:
            await worker.settled()
            warmed = await snapshot(worker, server)
    await worker.settled()
    after = await snapshot(worker, server)
    await worker.close()
    return idle, warmed, after
