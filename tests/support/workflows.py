"""API-format workflows the tests run on a real ComfyUI (CPU, tiny generated model)."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

from PIL import Image

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME as TINY_CHECKPOINT

REPO_ROOT = Path(__file__).resolve().parents[2]


def txt2img(steps: int = 2, size: int = 64, seed: int = 42, checkpoint: str = TINY_CHECKPOINT) -> dict:
    """test_input.json's workflow on the tiny checkpoint (or another), small enough for a CPU."""
    workflow = json.loads((REPO_ROOT / "test_input.json").read_text())["input"]["workflow"]
    workflow["4"]["inputs"]["ckpt_name"] = checkpoint
    workflow["5"]["inputs"].update(width=size, height=size)
    workflow["3"]["inputs"].update(steps=steps, seed=seed)
    return workflow


def add_lora(workflow: dict, lora_name: str, node_id: str = "10", source: str = "4") -> dict:
    """test_input.json's graph (checkpoint 4, sampler 3, prompts 6 and 7) with a LoraLoader
    titled 'Style' taking model and clip from `source` and feeding the sampler and prompts.
    Chain a second one with node_id="11", source="10"."""
    inputs = {"lora_name": lora_name, "strength_model": 1.0, "strength_clip": 1.0}
    workflow[node_id] = {
        "class_type": "LoraLoader",
        "_meta": {"title": "Style"},
        "inputs": {**inputs, "model": [source, 0], "clip": [source, 1]},
    }
    workflow["3"]["inputs"]["model"] = [node_id, 0]
    workflow["6"]["inputs"]["clip"] = [node_id, 1]
    workflow["7"]["inputs"]["clip"] = [node_id, 1]
    return workflow


def empty_image(color: int = 0xFF8000, size: int = 8, prefix: str = "empty") -> dict:
    """No model: EmptyImage -> SaveImage."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["1", 0]}},
    }


def load_image(name: str) -> dict:
    """LoadImage of an input file -> SaveImage."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "loaded", "images": ["1", 0]}},
    }


def png_base64(color: tuple[int, int, int], size: int = 8) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode_image(entry: dict) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(entry["data"])))
    image.load()
    return image


def scaled_image(name: str, size: int = 16) -> dict:
    """LoadImage -> ImageScale to size x size (nearest) -> SaveImage: a large input, a small output."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "nearest-exact",
                "width": size,
                "height": size,
                "crop": "disabled",
            },
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "scaled"}},
    }


def large_png(corner: tuple[int, int, int], side: int = 1800) -> bytes:
    """A PNG of about 9.7 MB (noise compresses badly), over RunPod's 10 MB /run limit as
    base64; its top-left 200 px are `corner`, so a scaled copy starts with that colour."""
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    image.paste(Image.new("RGB", (200, 200), corner), (0, 0))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()
