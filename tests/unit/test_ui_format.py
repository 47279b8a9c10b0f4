"""UI-format checks that need no ComfyUI: which nodes are unknown, and how they are named."""

from __future__ import annotations

from comfy_worker.request.node_catalog import NodeCatalog
from comfy_worker.request.ui_format import is_ui_format, packages_by_node, unknown_node_types
from comfy_worker.request.workflow import Workflow

OBJECT_INFO = {"KSampler": {}, "SaveImage": {}}


def node(node_id, node_type, **extra):
    return {"id": node_id, "type": node_type, "mode": 0, **extra}


def test_ui_and_api_formats_are_told_apart():
    assert is_ui_format({"nodes": [], "links": []})
    assert not is_ui_format({"3": {"class_type": "KSampler", "inputs": {}}})
    assert not is_ui_format({"nodes": "x", "links": []})


def test_unknown_types_are_named_with_title_and_package_and_notes_do_not_count():
    workflow = {
        "nodes": [
            node(1, "KSampler"),
            node(2, "Note"),
            node(3, "Reroute"),
            node(4, "FaceDetailer", title="Fix faces", properties={"cnr_id": "comfyui-impact-pack"}),
            node(5, "UpscaleOld", mode=4),  # bypassed: does not run
            node(6, "LoraLoaderV9", properties={"cnr_id": "comfy-core"}),
            node(7, "MyNode", properties={"aux_id": "someone/my-nodes"}),
        ],
        "links": [],
    }
    problems = dict(unknown_node_types(workflow, NodeCatalog.from_object_info(OBJECT_INFO)))
    assert set(problems) == {"input.workflow.nodes[id=4]", "input.workflow.nodes[id=6]", "input.workflow.nodes[id=7]"}
    assert problems["input.workflow.nodes[id=4]"] == (
        "node 4 'Fix faces' has type 'FaceDetailer', which this ComfyUI does not have "
        "(from the custom-node package 'comfyui-impact-pack': add it to ComfyUI/custom_nodes.json)"
    )
    assert "a core node of a newer ComfyUI" in problems["input.workflow.nodes[id=6]"]
    assert "'someone/my-nodes'" in problems["input.workflow.nodes[id=7]"]


def test_nodes_inside_subgraphs_are_checked_and_subgraph_instances_are_not_unknown():
    subgraph_id = "1b2c3d4e-0000-1111-2222-333344445555"
    workflow = {
        "nodes": [node(1, subgraph_id)],
        "links": [],
        "definitions": {
            "subgraphs": [{"id": subgraph_id, "name": "Sampler", "nodes": [node(10, "KSampler"), node(11, "Sharpen2")]}]
        },
    }
    [(field, problem)] = unknown_node_types(workflow, NodeCatalog.from_object_info(OBJECT_INFO))
    assert field == "input.workflow.nodes[id=11]"
    assert problem.startswith("subgraph 'Sampler' node 11 has type 'Sharpen2'")


def test_an_api_workflow_names_the_packages_its_ui_graph_records():
    graph = {
        "nodes": [
            node(4, "FaceDetailer", properties={"cnr_id": "comfyui-impact-pack"}),
            node(7, "MyNode", properties={"aux_id": "someone/my-nodes"}),
            node(3, "KSampler", properties={"Node name for S&R": "KSampler"}),
        ]
    }
    packages = packages_by_node(graph)
    assert packages == {"4": "comfyui-impact-pack", "7": "someone/my-nodes"}
    assert packages_by_node(None) == {}
    assert packages_by_node({"nodes": "x"}) == {}
    api = Workflow.from_api(
        {
            "3": {"class_type": "KSampler", "inputs": {}},
            "4": {"class_type": "FaceDetailer", "inputs": {}},
            "8": {"class_type": "Unheard", "inputs": {}},
        }  # fmt: skip
    )
    problems = dict(api.unknown_node_types(OBJECT_INFO, packages))
    assert "(from the custom-node package 'comfyui-impact-pack'" in problems["input.workflow.4.class_type"]
    assert "if a custom node provides it" in problems["input.workflow.8.class_type"]
