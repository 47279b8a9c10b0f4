"""The benchmarks' results table: targets are judged from the numbers, not written by hand."""

from benchmarks.job_overhead import Overhead
from benchmarks.memory import Snapshot
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
