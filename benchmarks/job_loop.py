"""The job loop through RunPod's SDK and the local endpoint: submit -> COMPLETED seen by a client.

A worker (rp_handler.py in production mode, the unmodified `runpod.serverless.start`
loop) serves the local endpoint against a real ComfyUI; a client POSTs
/runsync and reads the result. Each job's time splits into:
  pickup        queued -> taken by the worker (the endpoint's delayTime)
  handler       the handler's own time beside ComfyUI's execution (timings)
  result post   handler done -> result recorded (executionTime - handler total)
  client        the rest: the client's requests and the endpoint's answer
and the whole less ComfyUI's execution is the loop's overhead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import requests

from comfy_worker.core.contract import JobState
from tests.support.comfyui_server import ComfyServer
from tests.support.local_endpoint import API_KEY, running_endpoint
from tests.support.workflows import empty_image


@dataclass
class LoopTimes:
    total_ms: list[float]
    pickup_ms: list[float]
    handler_ms: list[float]
    result_post_ms: list[float]
    client_ms: list[float]
    overhead_ms: list[float]


def measure(server: ComfyServer, runs: int, log_file: Path) -> LoopTimes:
    times = LoopTimes([], [], [], [], [], [])
    with running_endpoint(server.env(), log_file) as base_url, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        for i in range(runs + 3):
            body = {"input": {"workflow": empty_image(color=(i * 104729 + 3) % 0xFFFFFF)}}
            started = time.perf_counter()
            status = session.post(f"{base_url}/runsync?wait=60000", json=body, timeout=70).json()
            total = (time.perf_counter() - started) * 1000
            assert status["status"] == JobState.COMPLETED, status
            if i < 3:  # warm-up
                continue
            timings = status["output"]["timings"]
            handler, comfy = timings["total_s"] * 1000, timings["execute_s"] * 1000
            times.total_ms.append(total)
            times.pickup_ms.append(status["delayTime"])
            times.handler_ms.append(handler - comfy)
            times.result_post_ms.append(status["executionTime"] - handler)
            times.client_ms.append(total - status["delayTime"] - status["executionTime"])
            times.overhead_ms.append(total - comfy)
    return times
