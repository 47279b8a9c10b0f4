"""Progress relay cost: updates per second, and time from a ComfyUI event to progress_update.

Runs a txt2img on the tiny checkpoint with many sampler steps through the handler
against a real ComfyUI (CPU). Each websocket event is timestamped as the client
yields it (to the event router, which hands it to the job's follower); each
progress_update sent while the tracker applies an event records the time since
that event arrived. Prints events per second, updates sent per second (default throttle) and the
median / p99 / max event-to-update latency. Usage:

    .local/venv/bin/python -m benchmarks.progress_overhead [--steps 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from comfy_worker.comfyui import comfy_client
from comfy_worker.comfyui.comfy_api import ComfyEvent
from comfy_worker.core.settings import Settings
from comfy_worker.progress import progress
from comfy_worker.worker import Worker
from tests.support.comfyui_server import start_comfyui
from tests.support.workflows import txt2img


async def measure(steps: int, updates_per_s: float | None) -> dict[str, float]:
    arrived: dict[int, float] = {}  # id(event) -> when the client yielded it
    applying = [0.0]  # arrival time of the event the tracker is applying now
    events = [0]
    latencies: list[float] = []
    sent_at: list[float] = []
    original_events = comfy_client.ComfyClient.events
    original_apply = progress.ProgressTracker.apply
    original_offer = progress.ProgressRelay.offer

    async def timed_events(self: comfy_client.ComfyClient) -> AsyncGenerator[ComfyEvent, None]:
        async for event in original_events(self):
            events[0] += 1
            arrived[id(event)] = time.perf_counter()
            yield event

    def timed_apply(self: progress.ProgressTracker, event: ComfyEvent) -> progress.Change:
        applying[0] = arrived.pop(id(event), 0.0)
        return original_apply(self, event)

    def timed_offer(self: progress.ProgressRelay, payload: dict[str, Any], change: progress.Change) -> None:
        sent = len(sent_at)
        original_offer(self, payload, change)
        if len(sent_at) > sent and applying[0]:  # sent now, in reaction to the event
            latencies.append(sent_at[-1] - applying[0])
        applying[0] = 0.0

    def capture(job: dict[str, Any], payload: dict[str, Any]) -> None:
        sent_at.append(time.perf_counter())

    progress.ProgressTracker.apply = timed_apply  # type: ignore[method-assign]
    progress.ProgressRelay.offer = timed_offer  # type: ignore[method-assign]
    comfy_client.ComfyClient.events = timed_events  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as base:
        server = start_comfyui(Path(base))
        try:
            env = server.env()
            if updates_per_s:
                env["PROGRESS_UPDATES_PER_S"] = str(updates_per_s)
            settings = Settings.from_env(env)
            worker = Worker(settings, progress=capture)
            await worker.handle({"id": "warmup", "input": {"workflow": txt2img(steps=2, seed=1)}})
            events[0], latencies[:], sent_at[:] = 0, [], []
            start = time.perf_counter()
            result = await worker.handle({"id": "bench", "input": {"workflow": txt2img(steps=steps, seed=2)}})
            elapsed = time.perf_counter() - start
            assert "error" not in result, result
            await worker.close()
        finally:
            server.stop()
            progress.ProgressTracker.apply = original_apply  # type: ignore[method-assign]
            progress.ProgressRelay.offer = original_offer  # type: ignore[method-assign]
            comfy_client.ComfyClient.events = original_events  # type: ignore[method-assign]
    us = sorted(v * 1e6 for v in latencies)
    return {
        "throttle_per_s": settings.progress_updates_per_s,
        "steps": steps,
        "elapsed_s": elapsed,
        "events": events[0],
        "updates": len(sent_at),
        "at_event": len(us),
        "median_us": statistics.median(us),
        "p99_us": us[int(len(us) * 0.99) - 1],
        "max_us": us[-1],
    }


def report(stats: dict[str, float]) -> str:
    return (
        f"throttle {stats['throttle_per_s']:g}/s, {stats['steps']:.0f} steps in {stats['elapsed_s']:.2f} s\n"
        f"  events from ComfyUI: {stats['events']:.0f} ({stats['events'] / stats['elapsed_s']:.1f}/s)\n"
        f"  progress updates sent: {stats['updates']:.0f} ({stats['updates'] / stats['elapsed_s']:.1f}/s), "
        f"{stats['at_event']:.0f} right at an event\n"
        f"  event -> progress_update: median {stats['median_us']:.0f} us, p99 {stats['p99_us']:.0f} us, "
        f"max {stats['max_us']:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="progress relay overhead")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--updates-per-s", type=float, default=None, help="override PROGRESS_UPDATES_PER_S")
    args = parser.parse_args()
    print(report(asyncio.run(measure(args.steps, args.updates_per_s))))


if __name__ == "__main__":
    main()
