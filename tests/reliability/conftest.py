"""The reliability suite's shared checks: after every case, the same worker serves the
next job, and ComfyUI's folders hold exactly what they held before. Each case belongs
to a class (`pytest.mark.case_class`, or its module's); every run that includes the
suite ends with a table of cases per class and how many passed (docs/development.md describes the classes)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from comfy_worker.core.settings import Settings
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
    # STOP_GRACE_S bounds only a hang: on a loaded machine a sampler step (between which an
    # interrupt takes effect) can take seconds, and a short grace would restart ComfyUI.
    env = {**comfyui.env(), "COMFY_HOST": proxy.host, "EVENT_SILENCE_CHECK_S": "1", "STOP_GRACE_S": "120"}
    worker = Worker(Settings.from_env(env), captured_progress)
    await worker.start()
    (comfyui.base_dir / "input").mkdir(exist_ok=True)
    before = job_tree(comfyui.base_dir)
    yield worker
    proxy.clear()
    await assert_serves_next_job(worker)
    assert job_tree(comfyui.base_dir) == before
    await worker.close()


MODULE_CLASSES = {
    "test_faults": "faults between worker and ComfyUI",
    "test_properties": "malformed input",
}


def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker("case_class")
        case_class = marker.args[0] if marker else MODULE_CLASSES.get(item.module.__name__.rpartition(".")[2])
        if case_class:
            item.user_properties.append(("case_class", case_class))


def pytest_terminal_summary(terminalreporter):
    cases: Counter[str] = Counter()
    passed: Counter[str] = Counter()
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            case_class = dict(getattr(report, "user_properties", [])).get("case_class")
            if case_class and report.when == "call":
                cases[case_class] += 1
                passed[case_class] += outcome == "passed"
    if cases:
        terminalreporter.section("reliability suite")
        terminalreporter.write_line("| class | cases | passed |")
        terminalreporter.write_line("|---|---|---|")
        for case_class in sorted(cases):
            terminalreporter.write_line(f"| {case_class} | {cases[case_class]} | {passed[case_class]} |")
