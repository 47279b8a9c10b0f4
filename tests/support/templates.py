"""Comfy-Org's own workflow templates (UI format, as the editor saves them), made small.

The templates come from the `comfyui-workflow-templates*` packages that the pinned
ComfyUI requires (installed by scripts/dev/setup_local.sh; nothing is committed).
`on_tiny_models` swaps in the generated checkpoint, VAE and LoRA
(scripts/dev/make_tiny_checkpoint.py) and shrinks sizes and steps so each runs on a
CPU in about a second, editing the editor's widget values as a user would.
"""

from __future__ import annotations

import copy
from typing import Any

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME, LORA_NAME
from scripts.image.comfyui_contract import TEMPLATE_PACKAGES, workflow_template

# Templates whose node types all exist in the pinned ComfyUI and whose models have a
# tiny stand-in: name -> the input files they load (LoadImage widget values).
RUNNABLE = {
    "default": [],
    "image2image": ["image2image_input_image.jpg"],
    "latent_upscale_different_prompt_model": [],
    "hiresfix_latent_workflow": [],
    "embedding_example": [],
    "inpaint_example": ["inpaint_example_input_image.png"],
    "inpaint_model_outpainting": ["inpaint_model_outpainting_input_image.png"],
    "sdxlturbo_example": [],
    "lora": [],
    "lora_multiple": [],
    "area_composition": [],
    "area_composition_square_area_for_subject": [],
}
# Subgraphed templates: converted (and checked against /object_info) but not run.
SUBGRAPHED = ["depth_t2i_adapter", "flux_depth_lora_example", "01_qwen_t2i_subgraphed"]


def template(name: str) -> dict[str, Any]:
    found = workflow_template(name)
    if found is None:
        raise FileNotFoundError(f"template {name} is in none of {TEMPLATE_PACKAGES}")
    return found


def _shrink(length: int) -> int:
    return max(8, length // 8 // 8 * 8)


def on_tiny_models(workflow: dict[str, Any], steps: int = 2) -> dict[str, Any]:
    """A copy on the generated models, at an eighth of the size (64 px for 512) and `steps` steps."""
    workflow = copy.deepcopy(workflow)
    for node in workflow["nodes"]:
        values = node.get("widgets_values")
        kind = node["type"]
        if kind == "CheckpointLoaderSimple":
            values[0] = CHECKPOINT_NAME
        elif kind == "VAELoader":
            values[0] = "taesd"
        elif kind == "LoraLoader":
            values[0] = LORA_NAME
        elif kind == "EmptyLatentImage":
            values[:3] = [max(64, _shrink(values[0])), max(64, _shrink(values[1])), 1]  # 512 -> 64
        elif kind == "KSampler":
            values[2] = steps
        elif kind == "SDTurboScheduler":
            values[0] = 1
        elif kind == "LatentUpscale":
            values[1:3] = [96, 96]
        elif kind == "ConditioningSetArea":
            width, height, x, y = values[:4]
            values[:4] = [max(64, _shrink(width)), max(64, _shrink(height)), _shrink(x), _shrink(y)]  # min 64
        elif kind == "ImageScaleToTotalPixels":
            values[1] = 0.01  # megapixels: 100x100
        elif kind == "ImagePadForOutpaint":
            values[:5] = [8, 8, 8, 8, 2]
    return workflow
