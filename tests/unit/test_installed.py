"""What is installed: which folder an input picks from, the closest names, refusals explained."""

from __future__ import annotations

from comfy_worker.comfyui.installed import InstalledModels, closest_names, explain_missing_models, values_not_installed
from comfy_worker.core.errors import WorkflowRejected
from comfy_worker.request.node_catalog import NodeCatalog
from comfy_worker.request.workflow import Workflow

INSTALLED = InstalledModels(
    folders={"checkpoints": ["/comfyui/models/checkpoints", "/runpod-volume/models/checkpoints"], "loras": ["/l"]},
    files={"checkpoints": ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly-fp16.safetensors"], "loras": []},
)


def test_folder_by_choices_then_by_input_name():
    assert (
        INSTALLED.folder_of("ckpt_name", ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly-fp16.safetensors"])
        == "checkpoints"
    )
    assert (
        INSTALLED.folder_of("model", ["v1-5-pruned-emaonly-fp16.safetensors", "sd_xl_base_1.0.safetensors"])
        == "checkpoints"
    )
    assert INSTALLED.folder_of("lora_name", []) == "loras"  # an empty folder: by name
    assert INSTALLED.folder_of("sampler_name", ["euler", "ddim"]) is None


def test_closest_names_ignore_case_folders_and_extension():
    choices = ["SDXL/sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly-fp16.safetensors"]
    assert closest_names("sd_xl_base_1.0_0.9vae.safetensors", choices) == ["SDXL/sd_xl_base_1.0.safetensors"]
    assert closest_names("v1-5-pruned-emaonly.ckpt", choices)[0] == "v1-5-pruned-emaonly-fp16.safetensors"
    assert closest_names("flux1-dev.safetensors", choices) == []


def test_a_refused_checkpoint_is_explained_and_comfyuis_error_kept():
    workflow = Workflow(
        {
            "4": {
                "class_type": "CheckpointLoaderSimple",
                "inputs": {"ckpt_name": "sdxl.safetensors"},
                "_meta": {"title": "Base"},
            }
        }
    )
    object_info = {"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [INSTALLED.files["checkpoints"]]}}}}
    comfy_error = {
        "node_id": "4", "class_type": "CheckpointLoaderSimple", "type": "value_not_in_list",
        "message": "Value not in list", "details": "ckpt_name: 'sdxl.safetensors' not in [...]",
        "input": "ckpt_name", "received_value": "sdxl.safetensors",
    }  # fmt: skip
    rejected = WorkflowRejected.from_comfy({"type": "prompt_outputs_failed_validation"}, [comfy_error])

    explained = explain_missing_models(rejected, workflow, NodeCatalog.from_object_info(object_info), INSTALLED)

    assert explained.message == (
        "workflow rejected by ComfyUI: node 4 'Base' (CheckpointLoaderSimple) input 'ckpt_name': "
        "'sdxl.safetensors' is not installed; closest: 'sd_xl_base_1.0.safetensors'; "
        "searched /comfyui/models/checkpoints, /runpod-volume/models/checkpoints"
    )
    [error] = explained.node_errors
    assert error["details"] == comfy_error["details"]
    assert error["missing"]["folder"] == "checkpoints"


def test_values_not_installed_skips_uploads_and_parameters():
    workflow = Workflow({
        "1": {"class_type": "Loader", "inputs": {"ckpt_name": "gone.safetensors", "vae_name": "gone-vae.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    })  # fmt: skip
    object_info = {
        "Loader": {
            "input": {
                "required": {"ckpt_name": [["a.safetensors"]]},
                "optional": {"vae_name": ["COMBO", {"options": []}]},
            }
        },
        "LoadImage": {"input": {"required": {"image": [["example.png"], {"image_upload": True}]}}},
    }
    assert values_not_installed(workflow, NodeCatalog.from_object_info(object_info), {("1", "vae_name")}) == [
        "node 1 'Loader' (Loader) input 'ckpt_name': 'gone.safetensors'"
    ]


def test_issue20_6_with_nothing_close_the_few_installed_files_are_listed():
    workflow = Workflow(
        {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-dev.safetensors"}}}
    )
    object_info = {"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [INSTALLED.files["checkpoints"]]}}}}
    comfy_error = {
        "node_id": "4", "class_type": "CheckpointLoaderSimple", "type": "value_not_in_list",
        "message": "Value not in list", "input": "ckpt_name", "received_value": "flux1-dev.safetensors",
    }  # fmt: skip
    rejected = WorkflowRejected.from_comfy({"type": "prompt_outputs_failed_validation"}, [comfy_error])

    explained = explain_missing_models(rejected, workflow, NodeCatalog.from_object_info(object_info), INSTALLED)

    listed = ", ".join(repr(name) for name in INSTALLED.files["checkpoints"])
    assert f"'flux1-dev.safetensors' is not installed; none is close; installed: {listed}" in explained.message
