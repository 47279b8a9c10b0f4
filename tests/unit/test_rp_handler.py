"""The entry point's lifecycle: no job is taken before ComfyUI serves, and a ComfyUI
that died during start-up becomes every job's error instead of a crash."""

import json

import rp_handler
from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.core.settings import Settings
from tests.support.fake_comfy import FakeComfy, fake_worker


class SlowStart(FakeComfy):
    """Answers HTTP only after a few polls, as ComfyUI does while it boots."""

    polls = 0

    async def is_responding(self) -> bool:
        self.polls += 1
        return self.polls > 3


async def test_waits_until_comfyui_answers_then_closes_for_the_sdks_loop(tmp_path):
    comfy = SlowStart(tmp_path)
    settings = Settings(comfyui_path=tmp_path, comfy_pid_file=tmp_path / "none", ready_poll_interval_s=0.001)
    worker = fake_worker(settings, comfy)

    await rp_handler.wait_for_comfyui(worker)

    assert comfy.polls == 4
    assert comfy.calls == ["offers", "object_info", "close"]


async def test_a_comfyui_dead_at_start_fails_each_job_with_the_cause(tmp_path):
    (tmp_path / "comfy.pid").write_text("gone")
    comfy = FakeComfy(tmp_path)
    comfy.responding = False
    settings = Settings(comfyui_path=tmp_path, comfy_pid_file=tmp_path / "comfy.pid")
    worker = fake_worker(settings, comfy, process=ComfyProcess(settings.comfy_pid_file))

    await rp_handler.wait_for_comfyui(worker)  # logs, does not raise
    result = await worker.handle({"id": "j", "input": {"workflow": {"1": {"class_type": "EmptyImage", "inputs": {}}}}})

    assert result["error_type"] == "comfyui_unavailable"
    assert result["refresh_worker"] is True
    assert "has exited" in result["error"]
    assert "queue_prompt" not in comfy.calls


async def test_the_warm_up_job_runs_once_comfyui_answers_before_any_job(tmp_path):
    job_file = tmp_path / "warmup.json"
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {}}, "2": {"class_type": "SaveImage", "inputs": {}}}
    job_file.write_text(json.dumps({"input": {"workflow": workflow}}))
    comfy = SlowStart(tmp_path)
    settings = Settings(
        comfyui_path=tmp_path, comfy_pid_file=tmp_path / "none", ready_poll_interval_s=0.001, warmup_job=job_file
    )
    sent: list[tuple[str, dict]] = []
    sink = rp_handler.except_warmup(lambda job, payload: sent.append((job["id"], payload)))
    worker = fake_worker(settings, comfy, progress=sink)

    await rp_handler.wait_for_comfyui(worker)

    assert comfy.calls.index("object_info") < comfy.calls.index("queue_prompt") < comfy.calls.index("close")
    assert sent == [], "the warm-up's progress never goes to RunPod"
    sink({"id": "real-job"}, {"progress": 0.5})
    assert sent == [("real-job", {"progress": 0.5})]
