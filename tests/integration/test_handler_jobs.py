"""The handler against a real ComfyUI: successes, every kind of failure, and cleanup."""

from __future__ import annotations

import json

import aiohttp

from tests.support.workflows import decode_image, empty_image, load_image, png_base64, txt2img


async def assert_worker_still_serves(run_job):
    result = await run_job({"workflow": empty_image(color=0x00FF00)})
    assert "error" not in result, result
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (0, 255, 0)


async def test_txt2img_on_generated_checkpoint(run_job, clean_after, comfyui):
    result = await run_job({"workflow": txt2img(steps=2, size=64)})

    assert "error" not in result, result
    [entry] = result["images"]
    assert entry["type"] == "base64"
    assert entry["mime_type"] == "image/png"
    assert entry["node_id"] == "9"
    image = decode_image(entry)
    assert image.size == (64, 64)
    # ComfyUI's SaveImage embeds the prompt it ran: proof the PNG came from ComfyUI.
    assert json.loads(image.info["prompt"])["4"]["inputs"]["ckpt_name"] == "tiny-random-sd15-noise.safetensors"


async def test_model_free_workflow(run_job, clean_after):
    result = await run_job({"workflow": empty_image(color=0xFF8000, size=16)})

    [entry] = result["images"]
    image = decode_image(entry)
    assert image.size == (16, 16)
    assert image.getpixel((3, 3)) == (255, 128, 0)


async def test_uploaded_input_image_is_loaded_and_removed(run_job, clean_after, comfyui):
    job = {"workflow": load_image("red.png"), "images": [{"name": "red.png", "image": png_base64((200, 10, 10))}]}

    result = await run_job(job)

    assert "error" not in result, result
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (200, 10, 10)
    assert not (comfyui.base_dir / "input" / "red.png").exists()


async def test_data_uri_input_and_input_as_json_string(run_job, clean_after):
    job = {
        "workflow": load_image("blue.png"),
        "images": [{"name": "blue.png", "image": "data:image/png;base64," + png_base64((0, 0, 250))}],
    }

    result = await run_job(json.dumps(job))

    assert decode_image(result["images"][0]).getpixel((0, 0)) == (0, 0, 250)


async def test_same_job_twice_returns_the_image_both_times(run_job, clean_after):
    job = {"workflow": empty_image(color=0x123456, prefix="twice")}

    first = await run_job(job)
    second = await run_job(job)

    for result in (first, second):
        assert "error" not in result, result
        [entry] = result["images"]
        assert decode_image(entry).getpixel((0, 0)) == (0x12, 0x34, 0x56)


async def test_invalid_input_names_the_fields(run_job, clean_after):
    result = await run_job({"workflow": {"1": {"inputs": {}}}, "images": [{"name": "../x.png", "image": 5}]})

    assert result["error_type"] == "invalid_input"
    fields = {p["field"] for p in result["details"]["problems"]}
    assert {"input.workflow.1.class_type", "input.images[0].name", "input.images[0].image"} <= fields
    assert "input.workflow.1.class_type: is required" in result["error"]
    await assert_worker_still_serves(run_job)


async def test_unknown_node_type_is_named_with_its_title_and_what_to_add(run_job, clean_after):
    workflow = empty_image()
    workflow["3"] = {"class_type": "SaveImag", "inputs": {}, "_meta": {"title": "Keep it"}}

    result = await run_job({"workflow": workflow})

    assert result["error_type"] == "invalid_input"
    assert result["details"]["problems"] == [
        {
            "field": "input.workflow.3.class_type",
            "problem": "node 3 'Keep it' has type 'SaveImag', which this ComfyUI does not have "
            "(did you mean 'SaveImage'?); if a custom node provides it, add its package to ComfyUI/custom_nodes.json",
        }
    ]
    await assert_worker_still_serves(run_job)


async def test_n3_a_graph_of_thousands_of_unknown_nodes_gets_a_small_error_and_the_worker_serves_on(
    run_job, clean_after
):
    workflow = {str(n): {"class_type": f"Mystery{n}", "inputs": {"x": n}} for n in range(1, 20_001)}

    result = await run_job({"workflow": workflow})

    assert result["error_type"] == "invalid_input"
    assert len(result["details"]["problems"]) == 20
    assert result["details"]["more_problems"] == 19_980
    assert len(json.dumps(result)) < 10_000
    await assert_worker_still_serves(run_job)


async def test_missing_required_input_names_node_class_and_input(run_job, clean_after):
    workflow = empty_image()
    del workflow["1"]["inputs"]["width"]

    result = await run_job({"workflow": workflow})

    assert result["error_type"] == "workflow_rejected"
    [node_error] = [e for e in result["details"]["node_errors"] if e["node_id"] == "1"]
    assert node_error["class_type"] == "EmptyImage"
    assert node_error["type"] == "required_input_missing"
    assert node_error["input"] == "width"
    assert "node 1 (EmptyImage) input 'width'" in result["error"]
    await assert_worker_still_serves(run_job)


async def test_runtime_failure_names_node_and_exception(run_job, clean_after, comfyui):
    corrupt = {"name": "corrupt.png", "image": "bm90IGFuIGltYWdl"}  # "not an image"

    result = await run_job({"workflow": load_image("corrupt.png"), "images": [corrupt]})

    assert result["error_type"] == "execution_failed"
    details = result["details"]
    assert details["node_id"] == "1"
    assert details["node_type"] == "LoadImage"
    assert details["exception_type"].endswith("UnidentifiedImageError")
    assert result["error"].startswith("node 1 (LoadImage) failed: ")
    assert "refresh_worker" not in result
    assert not (comfyui.base_dir / "input" / "corrupt.png").exists()
    await assert_worker_still_serves(run_job)


async def test_history_is_not_kept_on_a_warm_worker(run_job, comfyui):
    await run_job({"workflow": empty_image()})

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{comfyui.host}/history") as resp:
            assert await resp.json() == {}


async def test_the_outputs_come_from_comfyuis_events_not_a_history_read(run_job, clean_after, monkeypatch):
    """GET /history right after a prompt waits for ComfyUI's garbage collection: the
    worker takes the outputs from the `executed` events instead."""
    client = run_job.worker.comfyui.api
    read = client.history

    async def history_not_for_outputs(prompt_id):
        raise AssertionError("the outputs were read from /history")

    monkeypatch.setattr(client, "history", history_not_for_outputs)
    try:
        result = await run_job({"workflow": empty_image(color=0x5A6B7C)})
    finally:
        monkeypatch.setattr(client, "history", read)

    assert "error" not in result, result
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (0x5A, 0x6B, 0x7C)
