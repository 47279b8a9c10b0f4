"""The walk of a job through the package, measured: every function of comfy_worker that is handed
the job (its RunPod dict, its `input`, the parsed `JobInput` or its `JobContext`) while one job with
an input file runs against the scripted ComfyUI. The design review counted 18 such steps in 9 files
before the rooms and the JobContext; the walk must stay shorter, so a newcomer follows a job by
reading few modules."""

from __future__ import annotations

import base64
import logging
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.core.job import JobContext
from comfy_worker.core.settings import Settings
from comfy_worker.request.job_input import JobInput
from tests.support.fake_comfy import FakeComfy, fake_worker, png_bytes

REVIEWED_STEPS, REVIEWED_FILES = 18, 9  # the fourth design review's count

log = logging.getLogger(__name__)


async def test_a_job_walks_through_few_modules_and_rooms(tmp_path: Path) -> None:
    comfyui_path = tmp_path / "comfyui"
    for folder in ("input", "output", "temp"):
        (comfyui_path / folder).mkdir(parents=True)
    settings = Settings(comfyui_path=comfyui_path, comfy_pid_file=tmp_path / "no-pid", workflows_dir=tmp_path / "none")
    comfy = FakeComfy(comfyui_path)
    worker = fake_worker(settings, comfy, lambda job, payload: None, None, ComfyProcess(settings.comfy_pid_file))
    job: dict[str, Any] = {
        "id": "walk-1",
        "input": {
            "workflow": {
                "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
            },
            "images": [{"name": "in.png", "image": base64.b64encode(png_bytes()).decode()}],
        },
    }
    steps: list[tuple[str, str]] = []

    def record(frame: FrameType, event: str, arg: Any) -> None:
        path = frame.f_code.co_filename
        if event != "call" or "/comfy_worker/" not in path or frame.f_code.co_name == "<genexpr>":
            return
        carried = frame.f_locals.values()
        if any(value is job or value is job["input"] or isinstance(value, JobContext | JobInput) for value in carried):
            steps.append((path.rpartition("/comfy_worker/")[2], frame.f_code.co_qualname))

    sys.setprofile(record)
    try:
        result = await worker.handle(job)
    finally:
        sys.setprofile(None)
        await worker.close()

    assert "error" not in result, result
    walk = list(dict.fromkeys(steps))
    files = {file for file, _ in walk}
    rooms = {file.rpartition("/")[0] or "(the story)" for file in files}
    log.info(
        "the job's walk: %d steps in %d files, %d rooms (%s)\n%s",
        len(walk), len(files), len(rooms), ", ".join(sorted(rooms)),
        "\n".join(f"  {file}: {function}" for file, function in walk),
    )  # fmt: skip
    assert ("worker.py", "Worker._run_stages") in walk, "the story is where the walk turns"
    assert ("transfer/delivery.py", "Delivery.collect") in walk, "and it ends with the outputs"
    assert len(walk) < REVIEWED_STEPS, walk
    assert len(files) < REVIEWED_FILES, sorted(files)
    assert len(rooms) <= 5, sorted(rooms)
