"""What the worker adds to a job, beside ComfyUI's own work.

Runs the same model-free workflow (EmptyImage -> SaveImage, a new colour each run
so ComfyUI really executes it) N times two ways against one real ComfyUI (CPU):

- bare: the least a client can do: websocket open, POST /prompt, wait for the
  end event, GET /history, GET /view for the PNG;
- worker: `Worker.handle` with a job, as RunPod calls it (validation,
  tagging, progress, history, base64, cleanup).

Prints the median and p90 wall time of each and the difference. Usage:

    .local/venv/bin/python -m benchmarks.worker_overhead [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from comfy_worker.settings import Settings
from comfy_worker.worker import Worker
from tests.support.comfyui_server import start_comfyui
from tests.support.workflows import empty_image


async def bare_job(session: aiohttp.ClientSession, host: str, workflow: dict) -> bytes:
    client_id = uuid.uuid4().hex
    async with session.ws_connect(f"ws://{host}/ws?clientId={client_id}") as ws:
        async with session.post(f"http://{host}/prompt", json={"prompt": workflow, "client_id": client_id}) as resp:
            prompt_id = (await resp.json())["prompt_id"]
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            data = event.get("data", {})
            if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                break
    async with session.get(f"http://{host}/history/{prompt_id}") as resp:
        history = (await resp.json())[prompt_id]
    image = next(iter(history["outputs"].values()))["images"][0]
    async with session.get(f"http://{host}/view", params=image) as resp:
        return await resp.read()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def measure(runs: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as base:
        server = start_comfyui(Path(base))
        try:
            worker = Worker(Settings.from_env(server.env()), progress=lambda job, payload: None)
            await worker.start()
            times: dict[str, list[float]] = {"bare": [], "worker": []}
            async with aiohttp.ClientSession() as session:
                for warmup in (True, False):
                    for i in range(5 if warmup else runs):
                        color = (i * 7919 + (0 if warmup else 5)) % 0xFFFFFF
                        start = time.perf_counter()
                        await bare_job(session, server.host, empty_image(color=color, prefix="bare"))
                        bare = time.perf_counter() - start
                        start = time.perf_counter()
                        result = await worker.handle(
                            {"id": f"bench-{i}", "input": {"workflow": empty_image(color=color)}}
                        )
                        handled = time.perf_counter() - start
                        assert "error" not in result, result
                        if not warmup:
                            times["bare"].append(bare)
                            times["worker"].append(handled)
            await worker.close()
            return times
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="worker overhead vs a bare ComfyUI client")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    times = asyncio.run(measure(args.runs))
    for name, values in times.items():
        ms = [v * 1000 for v in values]
        print(f"{name:7s} median {statistics.median(ms):6.2f} ms   p90 {percentile(ms, 90):6.2f} ms   ({len(ms)} runs)")
    diff = statistics.median(times["worker"]) - statistics.median(times["bare"])
    print(f"worker adds {diff * 1000:+.2f} ms (median)")


if __name__ == "__main__":
    main()
