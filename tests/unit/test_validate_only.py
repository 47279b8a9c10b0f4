"""A validate-only job: the worker answers whether it could run the graph, running nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.core.settings import Settings
from tests.support.fake_comfy import OBJECT_INFO, FakeComfy, fake_worker

NODES = {
    **OBJECT_INFO,
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["sd15.safetensors", "sdxl-base.safetensors"], {}]}},
        "output_node": False,
    },
}
GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0]}},
}


@pytest.fixture
async def checked(tmp_path: Path):
    comfyui = tmp_path / "comfyui"
    for folder in ("input", "output", "temp"):
        (comfyui / folder).mkdir(parents=True)
    comfy = FakeComfy(comfyui, NODES)
    settings = Settings(comfyui_path=comfyui, comfy_pid_file=tmp_path / "none", workflows_dir=tmp_path / "none")
    worker = fake_worker(settings, comfy, process=ComfyProcess(settings.comfy_pid_file))

    async def check(graph: dict) -> dict:
        return await worker.handle({"id": "check", "input": {"workflow": graph, "validate_only": True}})

    yield check, comfy, worker
    await worker.close()


async def test_a_graph_the_worker_can_run_is_valid_and_nothing_runs(checked):
    check, comfy, _ = checked
    assert await check(GRAPH) == {"valid": True, "workflow_format": "api", "nodes": 2}
    assert "queue_prompt" not in comfy.calls


async def test_a_model_not_installed_is_named_with_its_input_and_the_closest_names(checked):
    check, comfy, _ = checked
    graph = {**GRAPH, "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base.safetensors"}}}

    result = await check(graph)

    assert result["error_type"] == "invalid_input"
    [problem] = result["details"]["problems"]
    assert problem["field"] == "input.workflow.4.inputs.ckpt_name"
    assert "'sdxl_base.safetensors' is not installed" in problem["problem"]
    assert "closest: sdxl-base.safetensors" in problem["problem"]
    assert "queue_prompt" not in comfy.calls


async def test_a_model_by_url_counts_as_offered_and_an_unknown_node_is_named(checked):
    check, _, _ = checked
    by_url = {
        **GRAPH,
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "hf://org/m/m.safetensors"}},
    }
    assert (await check(by_url))["valid"] is True

    unknown = await check({**GRAPH, "7": {"class_type": "FancyUpscaler", "inputs": {}}})
    assert unknown["error_type"] == "invalid_input"
    assert "FancyUpscaler" in unknown["error"]


async def test_validate_only_must_be_a_boolean(checked):
    _, _, worker = checked
    result = await worker.handle({"id": "j", "input": {"workflow": GRAPH, "validate_only": "yes"}})
    assert result["error_type"] == "invalid_input"
    assert [problem["field"] for problem in result["details"]["problems"]] == ["input.validate_only"]
