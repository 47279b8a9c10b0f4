"""A queue of jobs through RunPod's SDK and the local endpoint, for JOBS_IN_FLIGHT = 1, 2, 3.

`jobs` jobs are POSTed to /run at once; a worker (rp_handler.py in production mode, the
SDK's own loop) serves them against a real ComfyUI. For each setting and workflow:
jobs per second (first submit to last COMPLETED), each job's latency (the endpoint's
delayTime + executionTime), and ComfyUI's idle time between consecutive prompts, from
ComfyUI's own clock (each result's `comfyui_started_at` / `comfyui_ended_at`), and the
share of the queue's span ComfyUI spent running prompts (busy). Then an
isolated job (nothing else queued) with N = 2 beside N = 1: its latency, median.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from comfy_worker.core.contract import FINAL_STATES, JobState
from tests.support.comfyui_server import ComfyServer
from tests.support.local_endpoint import API_KEY, running_endpoint
from tests.support.workflows import empty_image, txt2img

WORKFLOWS = {
    "model-free": lambda i: empty_image(color=(i * 104729 + 7) % 0xFFFFFF),
    "tiny txt2img": lambda i: txt2img(steps=2, size=64, seed=i),
}


@dataclass
class QueueRun:
    workflow: str
    jobs_in_flight: int
    jobs: int
    wall_s: float
    latency_ms: list[float]
    idle_ms: list[float]  # ComfyUI idle between consecutive prompts
    busy: float = 1.0  # the share of the queue's span (first prompt's start to last one's end) ComfyUI ran prompts

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall_s


@dataclass
class Throughput:
    queues: list[QueueRun] = field(default_factory=list)
    isolated_ms: dict[int, list[float]] = field(default_factory=dict)  # N -> latencies of lone jobs

    def queue(self, workflow: str, jobs_in_flight: int) -> QueueRun:
        return next(q for q in self.queues if q.workflow == workflow and q.jobs_in_flight == jobs_in_flight)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_queue(session: requests.Session, base_url: str, workflow: str, jobs: int, offset: int) -> QueueRun:
    started = time.perf_counter()
    ids = [
        session.post(
            f"{base_url}/run", json={"input": {"workflow": WORKFLOWS[workflow](offset + i)}}, timeout=30
        ).json()["id"]
        for i in range(jobs)
    ]
    finals: dict[str, dict] = {}
    while len(finals) < len(ids):
        for job_id in ids:
            if job_id not in finals:
                status = session.get(f"{base_url}/status/{job_id}", timeout=30).json()
                if status["status"] in FINAL_STATES:
                    assert status["status"] == JobState.COMPLETED, status
                    finals[job_id] = status
        time.sleep(0.02)
    wall_s = time.perf_counter() - started
    latency = [status["delayTime"] + status["executionTime"] for status in finals.values()]
    windows = sorted(
        (status["output"]["timings"]["comfyui_started_at"], status["output"]["timings"]["comfyui_ended_at"])
        for status in finals.values()
    )
    idle = [
        max(0.0, (start - previous_end) * 1000)
        for (_, previous_end), (start, _) in zip(windows, windows[1:], strict=False)
    ]
    span = max(end for _, end in windows) - windows[0][0]
    busy = sum(end - start for start, end in windows) / span if span > 0 else 1.0
    return QueueRun(workflow, 0, jobs, wall_s, latency, idle, min(1.0, busy))


def isolated(session: requests.Session, base_url: str, runs: int) -> list[float]:
    latencies = []
    for i in range(runs + 2):
        body = {"input": {"workflow": WORKFLOWS["tiny txt2img"](10_000 + i)}}
        status = session.post(f"{base_url}/runsync?wait=60000", json=body, timeout=70).json()
        assert status["status"] == JobState.COMPLETED, status
        if i >= 2:  # warm-up
            latencies.append(status["delayTime"] + status["executionTime"])
    return latencies


def measure(server: ComfyServer, jobs: int, isolated_runs: int, log_dir: Path) -> Throughput:
    results = Throughput()
    for jobs_in_flight in (1, 2, 3):
        env = {**server.env(), "JOBS_IN_FLIGHT": str(jobs_in_flight)}
        log_file = log_dir / f"queue-{jobs_in_flight}.log"
        with running_endpoint(env, log_file) as base_url, requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {API_KEY}"
            run_queue(session, base_url, "tiny txt2img", 4, offset=0)  # warm-up: the model loaded
            for workflow in WORKFLOWS:
                run = run_queue(session, base_url, workflow, jobs, offset=jobs_in_flight * 1000)
                run.jobs_in_flight = jobs_in_flight
                results.queues.append(run)
            if jobs_in_flight in (1, 2):
                results.isolated_ms[jobs_in_flight] = isolated(session, base_url, isolated_runs)
    return results


def summary(results: Throughput) -> dict[str, float]:
    """The numbers the targets are judged on."""
    one, two = results.queue("tiny txt2img", 1), results.queue("tiny txt2img", 2)
    best = max((q for q in results.queues if q.workflow == "tiny txt2img"), key=lambda q: q.jobs_per_s)
    return {
        "idle_mean_2": statistics.mean(two.idle_ms),
        "idle_p90_2": percentile(two.idle_ms, 0.9),
        "busy_1": one.busy,
        "busy_2": two.busy,
        "speedup_2": two.jobs_per_s / one.jobs_per_s,
        "best_n": best.jobs_in_flight,
        "best_speedup": best.jobs_per_s / one.jobs_per_s,
        "idle_median_2": statistics.median(two.idle_ms),
        "idle_median_best": statistics.median(best.idle_ms),
        "isolated_gap_ms": statistics.median(results.isolated_ms[2]) - statistics.median(results.isolated_ms[1]),
    }
