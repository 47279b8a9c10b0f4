"""Named workflows: the parameter map, its checks, and how parameters land in the graph (no ComfyUI)."""

from __future__ import annotations

import json

import pytest

from comfy_worker.core.errors import InvalidJobInput
from comfy_worker.request.named_workflows import WorkflowLibrary, WorkflowLibraryError
from comfy_worker.request.node_catalog import NodeCatalog

OBJECT_INFO = {
    "EmptyImage": {"input": {"required": {"width": ["INT", {}], "height": ["INT", {}], "color": ["INT", {}]}}},
    "LoadImage": {"input": {"required": {"image": [["example.png"], {"image_upload": True}]}}},
    "ImageBlend": {"input": {"required": {"blend_mode": [["normal", "multiply"]], "image1": ["IMAGE"]}}},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}, "output_node": True},
}
GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "color": 0}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "3": {"class_type": "ImageBlend", "inputs": {"blend_mode": "normal", "image1": ["1", 0]}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
}
MAP = """
description = "a test"
[params.size]
node = ["1"]
input = "width"
type = "int"
min = 8
max = 128
[params.mode]
node = "3"
input = "blend_mode"
type = "choice"
[params.picture]
node = "2"
input = "image"
type = "image"
"""


def library(tmp_path, graph=GRAPH, param_map=MAP) -> WorkflowLibrary:
    (tmp_path / "blend.json").write_text(json.dumps(graph))
    (tmp_path / "blend.toml").write_text(param_map)
    return WorkflowLibrary.load(tmp_path, NodeCatalog.from_object_info(OBJECT_INFO))


def test_params_set_their_inputs_and_media_become_files(tmp_path):
    named = library(tmp_path).get("blend")
    workflow, files = named.apply({"size": 32, "mode": "multiply", "picture": "R0lGODlhAQABAAAAACw="})

    assert workflow.input_value("1", "width") == 32
    assert workflow.input_value("3", "blend_mode") == "multiply"
    assert workflow.input_value("2", "image") == "param-picture.gif"  # told from the data's first bytes
    assert [(file.name, file.field(0)) for file in files] == [("param-picture.gif", "input.params.picture")]


def test_defaults_are_the_workflows_own_values(tmp_path):
    named = library(tmp_path).get("blend")
    workflow, files = named.apply({})
    assert workflow == named.workflow
    assert files == []
    schema = named.describe()["parameters"]["properties"]
    assert schema["size"]["default"] == 64
    assert schema["mode"]["enum"] == ["normal", "multiply"]
    assert schema["picture"]["contentMediaType"] == "image/*"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"size": 4}, ("input.params.size", "input should be greater than or equal to 8")),
        ({"size": 8.5}, ("input.params.size", "input should be a valid integer")),
        ({"mode": "screen"}, ("input.params.mode", "input should be 'normal' or 'multiply'")),
        ({"colour": 1}, ("input.params.colour", "is not a parameter of 'blend' (its parameters: size, mode, picture)")),
        (
            {"picture": "not base64!"},
            ("input.params.picture", "is not valid base64, a base64 data URI or an http(s) URL"),
        ),
    ],
)
def test_bad_params_name_the_parameter(tmp_path, params, expected):
    with pytest.raises(InvalidJobInput) as info:
        library(tmp_path).get("blend").apply(params)
    problem = info.value.details["problems"][0]
    assert (problem["field"], problem["problem"]) == expected


@pytest.mark.parametrize(
    ("param_map", "expected"),
    [
        ('[params.x]\nnode = "9"\ninput = "width"\ntype = "int"\n', "params.x: node '9' is not in the workflow"),
        (
            '[params.x]\nnode = "1"\ninput = "depth"\ntype = "int"\n',
            "params.x: node 1 (EmptyImage) has no input 'depth'",
        ),
        ('[params.x]\nnode = "1"\ninput = "width"\ntype = "integer"\n', "params.x.type: input should be 'string'"),
        ('[params.x]\nnode = "1"\ninput = "width"\ntype = "choice"\n', "params.x: a choice needs `choices`"),
        ("[params.x\n", "not readable as TOML"),
    ],
)
def test_a_wrong_parameter_map_names_file_and_problem(tmp_path, param_map, expected):
    with pytest.raises(WorkflowLibraryError) as info:
        library(tmp_path, param_map=param_map)
    assert str(info.value).startswith(f"{tmp_path}/blend.toml: ")
    assert expected in str(info.value)


def test_unknown_workflow_lists_the_ones_there_are(tmp_path):
    with pytest.raises(InvalidJobInput) as info:
        library(tmp_path).get("upscale")
    assert "'upscale' is not a workflow of this worker; it has: blend" in info.value.message


def test_a_missing_folder_is_an_empty_library(tmp_path):
    assert WorkflowLibrary.load(tmp_path / "none", NodeCatalog.from_object_info(OBJECT_INFO)).describe() == []


def test_a_model_parameter_takes_an_installed_file_or_a_remote_reference(tmp_path):
    object_info = {**OBJECT_INFO, "LoraLoader": {"input": {"required": {"lora_name": [["a.safetensors"]]}}}}
    graph = {**GRAPH, "5": {"class_type": "LoraLoader", "inputs": {"lora_name": "a.safetensors"}}}
    (tmp_path / "l.json").write_text(json.dumps(graph))
    (tmp_path / "l.toml").write_text('[params.lora]\nnode = "5"\ninput = "lora_name"\ntype = "model"\n')
    named = WorkflowLibrary.load(tmp_path, NodeCatalog.from_object_info(object_info)).get("l")

    assert named.apply({"lora": "hf://o/r/b.safetensors"})[0].input_value("5", "lora_name") == "hf://o/r/b.safetensors"
    assert named.apply({"lora": "a.safetensors"})[0].input_value("5", "lora_name") == "a.safetensors"
    with pytest.raises(InvalidJobInput) as info:
        named.apply({"lora": "b.safetensors"})
    assert info.value.details["problems"][0]["field"] == "input.params.lora"
    assert named.describe()["parameters"]["properties"]["lora"]["x-installed"] == ["a.safetensors"]
