"""UI-format workflows against the real ComfyUI: Comfy-Org's own templates converted
and run, the same picture from both formats, and unknown nodes named."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from tests.support.templates import RUNNABLE, SUBGRAPHED, on_tiny_models, template
from tests.support.workflows import decode_image, txt2img


def rgba_png_base64(size: int = 64) -> str:
    """An input picture with a transparent square: inpainting templates take their mask from alpha."""
    image = Image.new("RGBA", (size, size), (40, 120, 200, 255))
    image.paste((0, 0, 0, 0), (16, 16, 48, 48))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("name", list(RUNNABLE))
async def test_comfy_org_template_converts_and_runs(run_job, clean_after, name):
    images = [{"name": file_name, "image": rgba_png_base64()} for file_name in RUNNABLE[name]]
    result = await run_job({"workflow": on_tiny_models(template(name)), "images": images})

    assert "error" not in result, result
    assert result["workflow_format"] == "ui"
    assert result["images"], result
    for entry in result["images"]:
        assert decode_image(entry).size[0] >= 8


async def test_same_workflow_in_ui_and_api_format_gives_the_same_image(run_job, clean_after):
    ui = on_tiny_models(template("default"))
    widgets = {node["id"]: node["widgets_values"] for node in ui["nodes"]}
    seed, _, steps, cfg, sampler, scheduler, denoise = widgets[3]
    api = txt2img(steps=steps, size=64, seed=seed)
    api["3"]["inputs"].update(cfg=cfg, sampler_name=sampler, scheduler=scheduler, denoise=denoise)
    api["6"]["inputs"]["text"] = widgets[6][0]
    api["7"]["inputs"]["text"] = widgets[7][0]

    from_ui = await run_job({"workflow": ui})
    from_api = await run_job({"workflow": api})

    assert (from_ui["workflow_format"], from_api["workflow_format"]) == ("ui", "api")
    assert decode_image(from_ui["images"][0]).tobytes() == decode_image(from_api["images"][0]).tobytes()
    # The UI graph rides in the PNG, as after a run in the editor: dropped onto it, the output opens it.
    assert json.loads(decode_image(from_ui["images"][0]).info["workflow"]) == ui
    assert "workflow" not in decode_image(from_api["images"][0]).info


async def test_an_api_job_gives_its_images_the_metadata_it_sends(run_job, clean_after):
    graph = {"nodes": [], "links": [], "version": 0.4, "note": "the editor's graph"}
    result = await run_job({"workflow": txt2img(steps=1, size=64, seed=5), "extra_pnginfo": {"workflow": graph}})
    info = decode_image(result["images"][0]).info
    assert json.loads(info["workflow"]) == graph
    assert json.loads(info["prompt"])["3"]["inputs"]["seed"] == 5


async def test_bypassed_and_muted_nodes_do_not_run(run_job, clean_after):
    ui = on_tiny_models(template("lora"))
    bypassed = [str(node["id"]) for node in ui["nodes"] if node.get("mode") == 4]
    assert bypassed, "the lora template bypasses a LoRA loader"
    ui["nodes"].append({"id": 97, "type": "SaveImage", "mode": 2, "inputs": [], "outputs": [], "widgets_values": ["m"]})
    result = await run_job({"workflow": ui})

    assert "error" not in result, result
    ran = json.loads(decode_image(result["images"][0]).info["prompt"])  # SaveImage embeds the prompt it ran
    assert not set(bypassed) & set(ran)
    assert "97" not in ran
    # What a bypassed node received goes to whoever used its output: the graph stays connected.
    assert all(value[0] in ran for node in ran.values() for value in node["inputs"].values() if isinstance(value, list))


@pytest.mark.parametrize("name", SUBGRAPHED)
async def test_subgraphed_templates_convert_to_known_nodes(session_worker, name):
    from comfy_worker.request.ui_format import to_api_format

    catalog = (await session_worker.comfyui.ready()).nodes
    api = to_api_format(template(name), catalog)

    assert api
    assert all(node["class_type"] in catalog for node in api.values())
    # Nodes inside a subgraph come out with ids of the form "<instance>:<inner id>".
    assert any(":" in node_id for node_id in api)


async def test_unknown_node_types_are_named_with_their_package(run_job):
    ui = on_tiny_models(template("default"))
    ui["nodes"].append(
        {
            "id": 99,
            "type": "ImpactWildcardProcessor",
            "title": "Wildcards",
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "widgets_values": ["a {red|blue} fox"],
            "properties": {"cnr_id": "comfyui-impact-pack", "ver": "8.8.1"},
        }
    )
    result = await run_job({"workflow": ui})

    assert result["error_type"] == "invalid_input"
    [problem] = result["details"]["problems"]
    assert problem["field"] == "input.workflow.nodes[id=99]"
    assert "node 99 'Wildcards' has type 'ImpactWildcardProcessor'" in problem["problem"]
    assert "custom-node package 'comfyui-impact-pack'" in problem["problem"]


async def test_an_api_workflow_sent_with_its_ui_graph_names_the_package_too(run_job):
    # As the editor queues: the API graph, and the UI graph in extra_pnginfo.workflow.
    api = txt2img(steps=1, size=64, seed=6)
    api["99"] = {"class_type": "ImpactWildcardProcessor", "inputs": {"wildcard_text": "a {red|blue} fox"}}
    graph = {"nodes": [{"id": 99, "type": "ImpactWildcardProcessor", "properties": {"cnr_id": "comfyui-impact-pack"}}]}
    result = await run_job({"workflow": api, "extra_pnginfo": {"workflow": graph}})

    assert result["error_type"] == "invalid_input"
    [problem] = result["details"]["problems"]
    assert problem["field"] == "input.workflow.99.class_type"
    assert "'ImpactWildcardProcessor'" in problem["problem"]
    assert "custom-node package 'comfyui-impact-pack'" in problem["problem"]


async def test_muted_unknown_node_does_not_count(run_job, clean_after):
    ui = on_tiny_models(template("default"))
    ui["nodes"].append({"id": 98, "type": "SomethingNotInstalled", "mode": 2, "inputs": [], "outputs": []})
    result = await run_job({"workflow": ui})
    assert "error" not in result, result


async def test_comfyui_validation_still_runs_after_conversion(run_job):
    ui = on_tiny_models(template("default"))
    for node in ui["nodes"]:
        if node["type"] == "KSampler":
            node["widgets_values"][2] = 0  # steps below ComfyUI's minimum of 1
    result = await run_job({"workflow": ui})
    assert result["error_type"] == "workflow_rejected"
    assert "steps" in result["error"]
