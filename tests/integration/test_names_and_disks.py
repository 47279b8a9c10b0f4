"""File names at the file system's limit and full disks, against the real ComfyUI: the job
either works as ComfyUI's own nodes would, or fails naming the full disk and the field;
the worker serves the next job and nothing is left on disk."""

from __future__ import annotations

import base64

from scripts.dev.make_tiny_checkpoint import LORA_NAME
from tests.support.comfyui_server import COMFYUI_DIR
from tests.support.servers import model_server
from tests.support.tools import full_disk
from tests.support.workflows import add_lora, decode_image, empty_image, load_image, png_base64, txt2img

LONG_PREFIX = "p" * 238  # <prefix>_00001_.png is 249 bytes: SaveImage writes it; no room for a marker beside it


async def test_n5_a_prefix_near_the_name_limit_saves_as_saveimage_does(run_job, clean_after):
    result = await run_job({"workflow": empty_image(color=0x123456, prefix=LONG_PREFIX)})

    assert "error" not in result, result
    [image] = result["images"]
    assert image["filename"].startswith(LONG_PREFIX)
    assert decode_image(image).getpixel((0, 0)) == (0x12, 0x34, 0x56)


async def test_n5_an_input_name_near_the_limit_is_used_and_removed(run_job, clean_after):
    name = "i" * 246 + ".png"  # 250 bytes
    result = await run_job({"workflow": load_image(name), "images": [{"name": name, "image": png_base64((1, 2, 3))}]})

    assert "error" not in result, result
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (1, 2, 3)


async def test_n6_a_full_output_disk_is_named(run_job, comfyui, clean_after):
    with full_disk(comfyui.base_dir / "output" / "full-disk") as folder:
        result = await run_job({"workflow": empty_image(prefix="full-disk/x")})
        left = sorted(path.name for path in folder.iterdir())

    assert result["error_type"] == "disk_full", result
    assert "the worker's output disk is full" in result["error"]
    assert result["details"]["node_id"] == "2"
    assert left == [".filler"], "the empty image and the failure note are removed"
    await assert_serves(run_job)


async def test_n8_a_full_input_disk_is_named_with_the_field(run_job, comfyui, clean_after):
    with full_disk(comfyui.base_dir / "input" / "full-in") as folder:
        image = {
            "name": "a.png",
            "subfolder": "full-in",
            "image": base64.b64encode(b"\x89PNG" + bytes(100_000)).decode(),
        }
        result = await run_job({"workflow": load_image("full-in/a.png"), "images": [image]})
        left = sorted(path.name for path in folder.iterdir())

    assert result["error_type"] == "disk_full", result
    assert result["details"] == {"field": "input.images[0].image", "disk": "input"}
    assert "the worker's input disk is full" in result["error"]
    assert str(COMFYUI_DIR) not in result["error"]
    assert left == [".filler"]
    await assert_serves(run_job)


async def test_n7_a_full_model_cache_is_named_with_the_field(run_job, comfyui, monkeypatch, clean_after):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    lora = (COMFYUI_DIR / "models" / "loras" / LORA_NAME).read_bytes()
    with full_disk(comfyui.model_cache / ".partial"), model_server({"/style.safetensors": lora}) as server:
        result = await run_job({"workflow": add_lora(txt2img(), f"{server.url}/style.safetensors")})

    assert result["error_type"] == "model_download_failed", result
    assert "the model cache's disk is full" in result["details"]["reason"]
    assert result["details"]["node_id"] == "10"
    assert result["details"]["input"] == "lora_name"
    await assert_serves(run_job)


async def assert_serves(run_job) -> None:
    result = await run_job({"workflow": empty_image(color=0x00FF00)})
    assert "error" not in result, result
