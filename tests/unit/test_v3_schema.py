"""The V3 node schema's shapes in GET /object_info (newer ComfyUIs: comfy_api/latest), as
the worker reads them: dynamic combos' nested inputs, hidden inputs, node packs."""

from __future__ import annotations

from comfy_worker.request.node_catalog import combo_choices, file_name_inputs, input_specs, node_pack
from comfy_worker.request.workflow import Workflow

# ResizeImageMaskNode and a model loader as ComfyUI v0.33.0 lists them (trimmed).
OBJECT_INFO = {
    "ResizeImageMaskNode": {
        "input": {
            "required": {
                "input": ["COMFY_MATCHTYPE_V3", {"template": {"allowed_types": "IMAGE,MASK"}}],
                "resize_type": [
                    "COMFY_DYNAMICCOMBO_V3",
                    {
                        "options": [
                            {
                                "key": "scale dimensions",
                                "inputs": {
                                    "required": {
                                        "width": ["INT", {"default": 512}],
                                        "crop": ["COMBO", {"options": ["disabled", "center"]}],
                                    }
                                },
                            },
                            {"key": "scale by multiplier", "inputs": {"required": {"multiplier": ["FLOAT", {}]}}},
                        ]
                    },
                ],
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        },
        "python_module": "comfy_extras.nodes_post_processing",
        "output_node": False,
    },
    "PackLoader": {
        "input": {
            "required": {
                "source": [
                    "COMFY_DYNAMICCOMBO_V3",
                    {"options": [{"key": "file", "inputs": {"required": {"ckpt_name": [["a.safetensors"], {}]}}}]},
                ]
            }
        },
        "python_module": "custom_nodes.ComfyUI-Pack",
        "output_node": False,
    },
    "GeminiNode": {"input": {"required": {}}, "python_module": "comfy_api_nodes.nodes_gemini"},
}


def test_a_dynamic_combos_options_and_their_inputs_are_the_nodes_inputs():
    specs = input_specs(OBJECT_INFO, "ResizeImageMaskNode")
    assert combo_choices(specs["resize_type"]) == ["scale dimensions", "scale by multiplier"]
    assert combo_choices(specs["resize_type.crop"]) == ["disabled", "center"]
    assert specs["resize_type.width"] == ["INT", {"default": 512}]
    assert "resize_type.multiplier" in specs, "hidden inputs are ComfyUI's"
    assert "unique_id" not in specs, "hidden inputs are ComfyUI's"


def test_a_file_chosen_inside_a_dynamic_combo_is_checked_like_any_file_input():
    assert "source.ckpt_name" in file_name_inputs(OBJECT_INFO)["PackLoader"]
    workflow = Workflow.from_api(
        {"1": {"class_type": "PackLoader", "inputs": {"source": "file", "source.ckpt_name": "../../etc/passwd"}}}
    )
    [(field, problem)] = workflow.unsafe_file_inputs(file_name_inputs(OBJECT_INFO))
    assert field.endswith("source.ckpt_name"), (field, problem)


def test_node_packs_come_from_python_module():
    assert node_pack(OBJECT_INFO["ResizeImageMaskNode"]) == "core"
    assert node_pack(OBJECT_INFO["PackLoader"]) == "ComfyUI-Pack"
    assert node_pack(OBJECT_INFO["GeminiNode"]) == "api_nodes"
    assert node_pack({"python_module": "nodes"}) == node_pack({}) == "core"
