"""scripts/image/check_workflows.py, the image build's proof of the named workflows,
against the real ComfyUI's node definitions and models (tests/integration/test_check_comfyui.py
runs it as the build does)."""

from __future__ import annotations

import json

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME
from scripts.image.check_workflows import problems
from tests.support.shipped_workflows import stage_workflows
from tests.support.workflows import add_lora


async def object_info(session_worker) -> dict:
    return await session_worker.comfyui.api.object_info()


async def test_shipped_workflows_pass_when_their_checkpoint_is_installed(session_worker, tmp_path):
    staged = stage_workflows(tmp_path / "workflows", CHECKPOINT_NAME)
    assert problems(staged, await object_info(session_worker)) == []


async def test_a_missing_model_fails_naming_workflow_node_and_file(session_worker, tmp_path):
    staged = stage_workflows(tmp_path / "workflows", CHECKPOINT_NAME)
    graph = json.loads((staged / "txt2img.json").read_text())
    graph = add_lora(graph, "style.safetensors")
    (staged / "txt2img.json").write_text(json.dumps(graph))

    assert problems(staged, await object_info(session_worker)) == [
        f"{staged}/txt2img.json: node 10 'Style' (LoraLoader) input 'lora_name': 'style.safetensors' "
        "is not installed or not offered"
    ]


async def test_unknown_nodes_and_a_wrong_parameter_map_fail(session_worker, tmp_path):
    staged = stage_workflows(tmp_path / "workflows", CHECKPOINT_NAME)
    graph = json.loads((staged / "img2img.json").read_text())
    graph["2"]["class_type"] = "LoadImageFromS3"
    (staged / "img2img.json").write_text(json.dumps(graph))
    (staged / "txt2img.toml").write_text(
        (staged / "txt2img.toml").read_text()
        + '\n[params.denoise]\nnode = "3"\ninput = "latent_image"\ntype = "float"\n'
    )
    (staged / "upscale.toml").write_text("")

    found = problems(staged, await object_info(session_worker))

    assert f"{staged}/img2img.json: node types this ComfyUI does not have: node 2 (LoadImageFromS3)" in found
    assert f"{staged}/txt2img.toml: params.denoise: input 'latent_image' of node 3 is wired to another node" in found
    assert f"{staged}/upscale.toml: a parameter map without its workflow (upscale.json)" in found
