"""Named workflows, list jobs, random seeds and refused models, against the real ComfyUI.

The session worker reads the shipped workflows (ComfyUI/workflows); they name the
image's SD1.5 checkpoint, so jobs here pick the generated one with their
`checkpoint` parameter, as a user picks any installed checkpoint."""

from __future__ import annotations

import json

import pytest

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME, LORA_NAME
from tests.support.comfyui_server import LOCAL_DIR
from tests.support.workflows import REPO_ROOT, add_lora, decode_image, png_base64, txt2img

TINY = {"checkpoint": CHECKPOINT_NAME, "steps": 2, "width": 64, "height": 64}


async def test_txt2img_by_name_with_params(run_job, clean_after):
    result = await run_job({"workflow_name": "txt2img", "params": {**TINY, "prompt": "a red fox", "seed": 7}})

    assert "error" not in result, result
    assert result["workflow_name"] == "txt2img"
    assert result["seeds"] == {"3.seed": 7}
    image = decode_image(result["images"][0])
    assert image.size == (64, 64)
    ran = json.loads(image.info["prompt"])  # SaveImage embeds the prompt ComfyUI ran
    assert ran["6"]["inputs"]["text"] == "a red fox"
    assert ran["4"]["inputs"]["ckpt_name"] == CHECKPOINT_NAME


async def test_same_params_same_image_and_the_named_workflow_matches_the_graph(run_job, clean_after):
    by_name = await run_job({"workflow_name": "txt2img", "params": {**TINY, "seed": 11}})
    graph = txt2img(steps=2, size=64, seed=11)
    graph["9"]["inputs"]["filename_prefix"] = "txt2img"
    by_graph = await run_job({"workflow": graph})
    assert decode_image(by_name["images"][0]).tobytes() == decode_image(by_graph["images"][0]).tobytes()


async def test_img2img_takes_its_image_as_a_parameter(run_job, clean_after):
    params = {"image": png_base64((200, 30, 30), size=64), "checkpoint": CHECKPOINT_NAME, "steps": 2, "strength": 0.5}
    result = await run_job({"workflow_name": "img2img", "params": params})

    assert "error" not in result, result
    assert decode_image(result["images"][0]).size == (64, 64)


@pytest.mark.parametrize(
    ("params", "field", "expected"),
    [
        ({"sede": 1}, "input.params.sede", "is not a parameter of 'txt2img' (its parameters: prompt, negative_prompt"),
        ({"steps": 500}, "input.params.steps", "less than or equal to 100"),
        ({"steps": "4"}, "input.params.steps", "valid integer"),
        ({"sampler": "eulr"}, "input.params.sampler", "input should be 'euler'"),
        (
            {"checkpoint": "nope.safetensors"},
            "input.params.checkpoint",
            f"must be an installed file (installed: {CHECKPOINT_NAME}",
        ),
    ],
)
async def test_bad_params_are_named_with_what_is_allowed(run_job, params, field, expected):
    result = await run_job({"workflow_name": "txt2img", "params": params})
    assert result["error_type"] == "invalid_input"
    [problem] = result["details"]["problems"]
    assert problem["field"] == field
    assert expected in problem["problem"]


async def test_missing_required_image_and_unknown_workflow(run_job):
    missing = await run_job({"workflow_name": "img2img", "params": {}})
    assert missing["details"]["problems"] == [{"field": "input.params.image", "problem": "is required"}]

    unknown = await run_job({"workflow_name": "txt2vid"})
    assert "'txt2vid' is not a workflow of this worker; it has: img2img, txt2img" in unknown["error"]


async def test_list_workflows_gives_json_schemas(run_job):
    result = await run_job({"list": "workflows"})

    by_name = {workflow["name"]: workflow for workflow in result["workflows"]}
    assert set(by_name) == {"img2img", "txt2img"}
    schema = by_name["txt2img"]["parameters"]
    assert schema["additionalProperties"] is False
    assert (
        schema["properties"]["steps"] | {"minimum": 1, "maximum": 100, "type": "integer"}
        == schema["properties"]["steps"]
    )
    assert CHECKPOINT_NAME in schema["properties"]["checkpoint"]["x-installed"]
    assert "euler" in schema["properties"]["sampler"]["enum"]
    assert by_name["img2img"]["parameters"]["required"] == ["image"]


async def test_list_models_names_loader_inputs_and_folders(run_job, comfyui):
    result = await run_job({"list": "models"})

    assert CHECKPOINT_NAME in result["models"]["checkpoints"]
    assert LORA_NAME in result["models"]["loras"]
    assert result["loader_inputs"]["CheckpointLoaderSimple.ckpt_name"]["folder"] == "checkpoints"
    assert result["loader_inputs"]["LoraLoader.lora_name"] == {"folder": "loras", "choices": [LORA_NAME]}
    assert any(path.endswith("models/checkpoints") for path in result["folders"]["checkpoints"])
    assert "KSampler.sampler_name" not in result["loader_inputs"]


async def test_list_nodes_names_every_node_type_custom_ones_included(run_job, comfyui):
    result = await run_job({"list": "nodes"})

    assert {"KSampler", "CheckpointLoaderSimple", "SaveImage", "WorkerSaveImage"} <= set(result["nodes"])
    assert result["nodes"] == sorted(result["nodes"])
    packs = result["node_packs"]
    assert "KSampler" in packs["core"]
    assert packs["worker_save_image"] == ["WorkerSaveImage"]
    assert sorted(name for names in packs.values() for name in names) == result["nodes"]


async def test_randomized_seeds_are_returned_and_reproduce_the_image(run_job, clean_after):
    first = await run_job({"workflow": txt2img(seed=1), "randomize_seeds": True})
    second = await run_job({"workflow": txt2img(seed=1), "randomize_seeds": True})
    [seed] = first["seeds"].values()
    assert first["seeds"] != second["seeds"]
    assert seed != 1

    again = await run_job({"workflow": txt2img(seed=seed)})
    assert again["seeds"] == first["seeds"]
    assert decode_image(again["images"][0]).tobytes() == decode_image(first["images"][0]).tobytes()


async def test_missing_checkpoint_names_node_input_closest_and_folders(run_job):
    workflow = txt2img()
    workflow["4"]["inputs"]["ckpt_name"] = "tiny-random-sd15.safetensors"
    result = await run_job({"workflow": workflow})

    assert result["error_type"] == "workflow_rejected"
    assert "node 4 'Load Checkpoint' (CheckpointLoaderSimple) input 'ckpt_name'" in result["error"]
    assert f"'tiny-random-sd15.safetensors' is not installed; closest: '{CHECKPOINT_NAME}'" in result["error"]
    [error] = result["details"]["node_errors"]
    assert error["type"] == "value_not_in_list"  # ComfyUI's own error is kept
    assert error["missing"]["folder"] == "checkpoints"
    assert any(path.endswith("models/checkpoints") for path in error["missing"]["searched"])


async def test_missing_lora_and_a_wrong_sampler_are_told_apart(run_job):
    workflow = add_lora(txt2img(), "tiny_lora.safetensors")
    workflow["3"]["inputs"]["sampler_name"] = "eulr"
    result = await run_job({"workflow": workflow})

    errors = {error["input"]: error for error in result["details"]["node_errors"]}
    assert errors["lora_name"]["missing"]["closest"] == [LORA_NAME]
    assert errors["lora_name"]["missing"]["folder"] == "loras"
    assert errors["sampler_name"]["missing"]["folder"] is None
    assert "'eulr' is not one of its choices; closest: 'euler'" in result["error"]


async def test_issue20_16_the_readme_example_runs_as_written_on_the_local_setup(run_job, use_settings, clean_after):
    """The local scripts point WORKFLOWS_DIR at .local/workflows: the shipped workflows on the
    generated checkpoint (scripts/dev/make_local_workflows.py)."""
    use_settings(WORKFLOWS_DIR=str(LOCAL_DIR / "workflows"))
    readme = (REPO_ROOT / "README.md").read_text()
    [line] = [line for line in readme.splitlines() if line.startswith('{"input": {"workflow_name": "txt2img"')]

    result = await run_job(json.loads(line)["input"])

    assert "error" not in result, result
    assert decode_image(result["images"][0]).size == (64, 64)


async def test_a_validate_only_job_checks_against_the_real_comfyui_and_runs_nothing(run_job, comfyui):
    files_before, queue_before = comfyui.job_files(), comfyui.queue()
    graph = txt2img(steps=2, size=64)

    assert (await run_job({"workflow": graph, "validate_only": True}))["valid"] is True
    missing = await run_job({"workflow": add_lora(graph, "tiny_lora.safetensors"), "validate_only": True})
    named = await run_job({"workflow_name": "txt2img", "params": {"steps": 2}, "validate_only": True})

    assert missing["error_type"] == "invalid_input", missing
    [problem] = missing["details"]["problems"]
    assert problem["field"].endswith(".inputs.lora_name")
    assert "'tiny_lora.safetensors' is not installed" in problem["problem"]
    assert f"closest: {LORA_NAME}" in problem["problem"]
    # The shipped txt2img names the image's checkpoint, which the tests' ComfyUI lacks.
    assert [problem["field"] for problem in named["details"]["problems"]] == ["input.workflow.4.inputs.ckpt_name"]
    assert comfyui.job_files() == files_before
    assert comfyui.queue() == queue_before
