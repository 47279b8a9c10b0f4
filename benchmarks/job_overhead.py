"""Per-job overhead: what a job costs beside ComfyUI's own execution.

The same workflows run, alternately, through two clients against one real ComfyUI:

- lean: the least a client can do, in the standard library only: a new websocket
  per job (a raw socket and the RFC 6455 handshake), one keep-alive HTTP
  connection, POST /prompt, wait for the prompt's end event, GET /history, GET
  /view for the image;
- worker: `Worker.handle` with a job, as RunPod calls it (validation, tagging,
  progress, outputs as base64, clean-up of files and history).

Overhead = wall time - ComfyUI's execution (execution_success - execution_start,
ComfyUI's own ms timestamps: from the prompt's history for the lean client, from the
result's `comfyui_started_at` / `comfyui_ended_at` for the worker, which reads them
from the same events). The worker runs WorkerSaveImage where the lean client runs
SaveImage, so the PNG encoding falls outside ComfyUI's execution and inside the
worker's overhead: its figure is the conservative one. Workflows: model-free (EmptyImage 8x8 -> SaveImage)
and the tiny txt2img (2 steps, 64x64); each run gets a new seed or colour so
ComfyUI really executes it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.lean_client import LeanClient, comfy_execution_s
from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from tests.support.comfyui_server import ComfyServer
from tests.support.workflows import empty_image, txt2img


@dataclass
class Overhead:
    workflow: str
    client: str
    overheads_ms: list[float]
    walls_ms: list[float]

    def median(self) -> float:
        return statistics.median(self.overheads_ms)

    def p90(self) -> float:
        return statistics.quantiles(self.overheads_ms, n=10)[-1]


WORKFLOWS: dict[str, Callable[[int], dict[str, Any]]] = {
    "model-free (EmptyImage 8x8 -> SaveImage)": lambda i: empty_image(color=(i * 7919 + 11) % 0xFFFFFF),
    "tiny txt2img (2 steps, 64x64)": lambda i: txt2img(steps=2, size=64, seed=1000 + i),
}


async def measure(server: ComfyServer, runs: int) -> list[Overhead]:
    worker = Worker(Settings.from_env(server.env()), progress=lambda job, payload: None)
    await worker.start()
    lean = LeanClient(server.host)
    results = []
    for name, make in WORKFLOWS.items():
        lean_result = Overhead(name, "lean client", [], [])
        worker_result = Overhead(name, "worker", [], [])
        for i in range(runs + 5):  # the first five warm both up
            started = time.perf_counter()
            _, entry = lean.run(make(2 * i))
            wall = time.perf_counter() - started
            if i >= 5:
                lean_result.walls_ms.append(wall * 1000)
                lean_result.overheads_ms.append((wall - comfy_execution_s(entry)) * 1000)
            started = time.perf_counter()
            result = await worker.handle({"id": f"bench-{i}", "input": {"workflow": make(2 * i + 1)}})
            wall = time.perf_counter() - started
            assert "error" not in result, result
            if i >= 5:
                worker_result.walls_ms.append(wall * 1000)
                timings = result["timings"]
                comfy_s = timings["comfyui_ended_at"] - timings["comfyui_started_at"]
                worker_result.overheads_ms.append((wall - comfy_s) * 1000)
        results += [lean_result, worker_result]
    await worker.close()
    return results
