"""Progress relay cost: updates per second, and time from a ComfyUI event to progress_update.

Runs a txt2img on the tiny checkpoint with many sampler steps through the handler
against a real ComfyUI (CPU). Each websocket event is timestamped as the client
yields it; each progress_update call records the time since the event that caused
it. Prints events per second, updates sent per second (default throttle) and the
median / p99 / max event-to-update latency. Usage:

    .local/venv/bin/python -m benchmarks.progress_overhead [--steps 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from comfy_worker import comfy_client
from comfy_worker.settings import Settings
from comfy_worker.worker import Worker
from tests.support.comfyui_server import start_comfyui
from tests.support.workflows import txt2img


async def measure(steps: int, updates_per_s: float | None) -> None:
    last_event_at = [0.0]
    events = [0]
    latencies: list[float] = []
    sent_at: list[float] = []
    original_events = comfy_client.ComfyClient.events

    async def timed_events(self):
        async for event in original_events(self):
            events[0] += 1
            last_event_at[0] = time.perf_counter()
            yield event  # the handler reacts synchronously until it asks for the next event
            last_event_at[0] = 0.0

    def capture(job, payload):
        now = time.perf_counter()
        sent_at.append(now)
        if last_event_at[0]:  # sent in reaction to an event, not by the throttle's timer
            latencies.append(now - last_event_at[0])

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
    us = sorted(v * 1e6 for v in latencies)
    print(f"throttle {settings.progress_updates_per_s:g}/s, {steps} steps in {elapsed:.2f} s")
    print(f"  events from ComfyUI: {events[0]} ({events[0] / elapsed:.1f}/s)")
    print(f"  progress updates sent: {len(sent_at)} ({len(sent_at) / elapsed:.1f}/s), {len(us)} right at an event")
    print(
        f"  event -> progress_update: median {statistics.median(us):.0f} us, "
        f"p99 {us[int(len(us) * 0.99) - 1]:.0f} us, max {us[-1]:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="progress relay overhead")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--updates-per-s", type=float, default=None, help="override PROGRESS_UPDATES_PER_S")
    args = parser.parse_args()
    asyncio.run(measure(args.steps, args.updates_per_s))


if __name__ == "__main__":
    main()
