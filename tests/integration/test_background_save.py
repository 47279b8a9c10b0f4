"""WorkerSaveImage (comfyui_nodes/worker_save_image), in a real ComfyUI: the files SaveImage
writes, byte for byte, with the PNG encoding done after the node returns."""

from __future__ import annotations

import io
import json
import time
import urllib.request
import uuid
from pathlib import Path

from PIL import Image

from tests.support.workflows import decode_image, empty_image


def queue(comfyui, prompt: dict) -> str:
    body = json.dumps({"prompt": prompt, "client_id": uuid.uuid4().hex}).encode()
    request = urllib.request.Request(f"http://{comfyui.host}/prompt", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as resp:
        return json.load(resp)["prompt_id"]


def outputs(comfyui, prompt_id: str, timeout_s: float = 60) -> list[str]:
    """The prompt's output file names, once it has finished; its history entry is then
    deleted, as the worker does (the shared ComfyUI keeps none)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(f"http://{comfyui.host}/history/{prompt_id}") as resp:
            entry = json.load(resp).get(prompt_id)
        if entry and entry.get("status", {}).get("completed"):
            break
        assert time.monotonic() < deadline, entry
        time.sleep(0.05)
    body = json.dumps({"delete": [prompt_id]}).encode()
    urllib.request.urlopen(
        urllib.request.Request(f"http://{comfyui.host}/history", body, {"Content-Type": "application/json"})
    ).close()
    return [image["filename"] for node in entry["outputs"].values() for image in node.get("images", [])]


def complete(path: Path, timeout_s: float = 30) -> bytes:
    deadline = time.monotonic() + timeout_s
    while path.with_name(path.name + ".writing").exists():
        assert time.monotonic() < deadline, f"{path.name} still being written"
        time.sleep(0.01)
    return path.read_bytes()


def batch(saver: str, prefix: str, size: int = 64, batch_size: int = 2, color: int = 0x3366CC) -> dict:
    workflow = empty_image(color=color, size=size, prefix=prefix)
    workflow["1"]["inputs"]["batch_size"] = batch_size
    workflow["2"]["class_type"] = saver
    return workflow


def test_the_files_are_saveimages_own_bytes(comfyui):
    prefix = f"same-{uuid.uuid4().hex[:6]}"
    output = comfyui.base_dir / "output"
    plain = outputs(comfyui, queue(comfyui, batch("SaveImage", prefix)))
    background = outputs(comfyui, queue(comfyui, batch("WorkerSaveImage", prefix)))
    try:
        assert plain == [f"{prefix}_00001_.png", f"{prefix}_00002_.png"]
        assert background == [f"{prefix}_00003_.png", f"{prefix}_00004_.png"], "the counter goes on as SaveImage's"
        for ours, theirs in zip(background, plain, strict=True):
            assert complete(output / ours) == (output / theirs).read_bytes(), "pixels, compression and metadata"
    finally:
        for name in plain + background:
            (output / name).unlink(missing_ok=True)


def test_prompts_queued_together_never_share_a_file_name(comfyui):
    prefix = f"queued-{uuid.uuid4().hex[:6]}"
    output = comfyui.base_dir / "output"
    # 512 px: the first prompt's PNGs are still being encoded when the second one names its files.
    first = queue(comfyui, batch("WorkerSaveImage", prefix, size=512, color=0x010203))
    second = queue(comfyui, batch("WorkerSaveImage", prefix, size=512, color=0x040506))  # not ComfyUI's cache
    names = outputs(comfyui, first) + outputs(comfyui, second)
    try:
        assert names == [f"{prefix}_0000{n}_.png" for n in range(1, 5)]
        for name in names:
            assert Image.open(io.BytesIO(complete(output / name))).size == (512, 512)
        assert not list(output.glob(f"{prefix}*.writing"))
    finally:
        for name in names:
            (output / name).unlink(missing_ok=True)


async def test_a_job_gets_its_png_with_the_graph_it_sent(run_job):
    result = await run_job({"workflow": empty_image(color=0x0F1E2D, size=16)})

    assert "error" not in result, result
    image = decode_image(result["images"][0])
    assert image.getpixel((0, 0)) == (0x0F, 0x1E, 0x2D)
    graph = json.loads(image.info["prompt"])
    assert graph["2"]["class_type"] == "SaveImage", "the PNG's graph loads in any ComfyUI"


def test_a_taken_name_is_never_overwritten(comfyui):
    """ComfyUI's counter can land on a taken name: with %batch_num% in the prefix it never
    matches the saved files (SaveImage then overwrites the last prompt's image), and a
    folder listing can miss a file renamed at that moment. The name is created exclusively."""
    prefix = f"taken-{uuid.uuid4().hex[:6]}_%batch_num%"
    output = comfyui.base_dir / "output"
    first = outputs(comfyui, queue(comfyui, batch("WorkerSaveImage", prefix, batch_size=1, color=0x0A0A0A)))
    second = outputs(comfyui, queue(comfyui, batch("WorkerSaveImage", prefix, batch_size=1, color=0x0B0B0B)))
    try:
        stem = prefix.replace("%batch_num%", "0")
        assert first == [f"{stem}_00001_.png"]
        assert second == [f"{stem}_00002_.png"]
        assert Image.open(io.BytesIO(complete(output / first[0]))).getpixel((0, 0)) == (10, 10, 10)
        assert Image.open(io.BytesIO(complete(output / second[0]))).getpixel((0, 0)) == (11, 11, 11)
    finally:
        for name in first + second:
            (output / name).unlink(missing_ok=True)
