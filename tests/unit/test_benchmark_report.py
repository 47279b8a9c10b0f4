"""The benchmarks' results table: targets are judged from the numbers, not written by hand."""

import pytest

from benchmarks import boot
from benchmarks.boot import BootResults, BootRun
from benchmarks.job_overhead import Overhead
from benchmarks.memory import Snapshot
from benchmarks.queue_throughput import QueueRun, Throughput
from benchmarks.report import Report, render


def overhead(workflow: str, client: str, ms: float) -> Overhead:
    return Overhead(workflow, client, [ms] * 10, [ms + 100] * 10)


def test_targets_are_met_or_missed_by_the_measured_numbers():
    report = Report(
        {"date": "2026-11-27", "command": "python -m benchmarks"},
        overheads=[
            overhead("model-free", "lean client", 4.0),
            overhead("model-free", "worker", 5.0),
            overhead("txt2img", "lean client", 4.0),
            overhead("txt2img", "worker", 6.0),
        ],
        memory=(Snapshot(600, 900, 0, 0), Snapshot(600, 1200, 0, 0), Snapshot(600.5, 1201, 0, 0)),
    )
    text = render(report, memory_jobs=200)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| per-job")}
    assert "+1.00 ms (medians) | met" in rows["per-job overhead within 1.5 ms of the lean client: model-free"]
    assert (
        "+2.00 ms (medians) | **missed** | see section 2"
        in rows["per-job overhead within 1.5 ms of the lean client: txt2img"]
    )
    assert "history 0 -> 0, files 0 -> 0, worker RSS +0.5 MB, ComfyUI RSS +1.0 MB | met" in text
    assert "| after 200 jobs | 600 | 1201 | 0 | 0 |" in text
    assert "Not run (`--skip-cold-start`)" in text


def test_queue_targets_are_judged_from_the_queue_runs():
    def queue(workflow: str, n: int, wall_s: float, idle_ms: float) -> QueueRun:
        return QueueRun(workflow, n, 50, wall_s, [1000.0] * 50, [idle_ms] * 48 + [idle_ms * 3], 0.3 * n)

    throughput = Throughput(
        queues=[
            queue("model-free", 1, 50.0, 1000.0),
            queue("tiny txt2img", 1, 50.0, 600.0),
            queue("model-free", 2, 25.0, 4.0),
            queue("tiny txt2img", 2, 30.0, 25.0),
            queue("tiny txt2img", 3, 20.0, 3.0),
        ],
        isolated_ms={1: [1000.0, 1002.0], 2: [1001.0, 1003.0]},
    )
    text = render(Report({"date": "2026-12-03"}, throughput=throughput))

    assert "| mean 26.0 ms, p90 25.0 ms (tiny txt2img); ComfyUI busy 60% of the queue | **missed** |" in text
    assert "| 1.67x with 2, 2.50x with 3 | **missed** | section 7: with one job in flight ComfyUI" in text
    assert "is already busy 30% of the queue, so no JOBS_IN_FLIGHT can do better than 3.33x" in text
    assert "| +1.0 ms | met |" in text
    assert "| tiny txt2img | 3 | 2.50 | 1000 | 1000 | 3.1 | 3.0 | 3.0 | 90% |" in text


def test_the_boot_phases_come_from_comfyuis_log_lines_and_judge_the_boot_target():
    lines = [
        (0.4, "Adding extra search path checkpoints /x"),
        (2.0, "Checkpoint files will always be loaded safely."),
        (2.1, "Total VRAM 24105 MB, total RAM 24105 MB"),
        (2.2, "Device: cpu"),
        (6.0, "Python version: 3.11.7"),
        (6.1, "[Prompt Server] web root: /static"),
        (7.0, "Import times for custom nodes:"),
        (7.0, "   0.2 seconds: /comfyui/custom_nodes/worker_save_image"),
        (7.5, "Starting server"),
    ]
    phases = boot.phases_of(lines, answers_s=7.6)
    assert phases == pytest.approx(
        {
            "interpreter and torch import": 2.0,
            "device initialisation": 0.2,
            "ComfyUI's own imports (nodes, comfy.sd, torchvision)": 3.8,
            "server and frontend": 0.1,
            "built-in and API nodes": 0.9 - 0.2,
            "database and routes": 0.5,
            "custom nodes": 0.2,
            "listening": 0.1,
        }
    )
    assert sum(phases.values()) == pytest.approx(7.6)

    def results(plain_s: float, launch_s: float) -> BootResults:
        runs = {}
        for cache in ("warm", "cold"):
            runs[(cache, boot.CONFIGS[0].name)] = [BootRun(plain_s, phases)]
            runs[(cache, boot.CONFIGS[-1].name)] = [BootRun(launch_s, phases)]
        return BootResults("here", runs)

    met = render(Report({"date": "d"}, boot=results(10.0, 6.5)))
    assert "6.50 s against 10.00 s: 35% sooner | met" in met
    assert "## 9. ComfyUI's boot" in met
    missed = render(Report({"date": "d"}, boot=results(10.0, 8.0)))
    assert "8.00 s against 10.00 s: 20% sooner | **missed**" in missed


def test_a_containers_start_is_judged_by_its_two_ratios_over_a_plain_boot():
    start_sh_lines = [
        (0.3, "[start.sh] preloading /usr/lib/libtcmalloc.so.4 into ComfyUI"),
        (0.5, "[start.sh] ComfyUI starting (pid 12) on 127.0.0.1:8188"),
        (2.5, "Checkpoint files will always be loaded safely."),
        (2.6, "Device: cpu"),
        (6.0, "Python version: 3.12.3"),
        (6.1, "[Prompt Server] web root: /static"),
        (6.5, "Import times for custom nodes:"),
        (6.9, "Starting server"),
    ]
    phases = boot.phases_of(start_sh_lines, 7.0, [boot.START_SH_PHASE, *boot.PHASES])
    assert phases["start.sh, before ComfyUI starts"] == pytest.approx(0.5)
    assert phases["interpreter and torch import"] == pytest.approx(2.0)
    plain = boot.phases_of(start_sh_lines[2:], 10.0, [boot.START_SH_PHASE, *boot.PHASES])
    assert plain["start.sh, before ComfyUI starts"] == 0.0, "a plain boot has no start.sh"

    results = BootResults(
        "image",
        {
            ("warm", boot.IMAGE_PLAIN.name): [BootRun(10.0, plain), BootRun(11.0, plain), BootRun(9.0, plain)],
            ("warm", boot.IMAGE_START_SH.name): [BootRun(7.0, phases, 8.0), BootRun(6.0, phases, 7.5)],
        },
    )
    assert boot.image_ratios(results, "warm") == pytest.approx((0.65, 0.775))
    section = boot.image_section(results)
    assert "warm cache: ComfyUI answers in 0.65x, the first result comes in 0.78x" in section
    assert "| **first job's result** | - | **7.75** |" in section
