import pytest

from comfy_worker.request.job_input import parse_job_input
from comfy_worker.request.node_catalog import file_name_inputs, output_node_classes
from comfy_worker.request.workflow import JOB_TAG_INPUT, SUGGESTED_TYPES, Workflow

NODES = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m"}, "_meta": {"title": "Model"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}


def test_output_node_classes_from_object_info():
    info = {"SaveImage": {"output_node": True}, "KSampler": {"output_node": False}, "Old": {}}
    assert output_node_classes(info) == {"SaveImage"}


def test_only_output_nodes_are_tagged_and_the_original_is_unchanged():
    workflow = Workflow(NODES)
    tagged = workflow.tagged("job-1", frozenset({"SaveImage"}))
    prompt = tagged.to_prompt()
    assert prompt["1"] == NODES["1"]
    assert prompt["2"]["inputs"] == {"images": ["1", 0], JOB_TAG_INPUT: "job-1"}
    assert JOB_TAG_INPUT not in workflow.to_prompt()["2"]["inputs"]
    assert tagged != workflow
    assert tagged.output_nodes(frozenset({"SaveImage"})) == ["2"]


def test_names_and_classes_of_nodes():
    workflow = Workflow(NODES)
    assert (workflow.title("1"), workflow.class_type("1")) == ("Model", "CheckpointLoaderSimple")
    assert (workflow.title("2"), workflow.display_name("2")) == (None, "SaveImage")
    assert workflow.class_type(None) is None
    assert workflow.display_name("9") == "node 9"
    assert list(workflow) == ["1", "2"]
    assert len(workflow) == 2
    assert "2" in workflow


def test_the_parsed_workflow_is_the_sent_json():
    request = parse_job_input({"workflow": NODES})
    assert request.workflow == Workflow(NODES)
    assert request.workflow.to_prompt() == NODES


def test_file_name_inputs_come_from_combos_and_uploads():
    info = {
        "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
        "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["m.safetensors"], {}]}}},
        "LoadVideo": {"input": {"required": {"file": ["COMBO", {"options": [], "video_upload": True}]}}},
        "KSampler": {"input": {"required": {"seed": ["INT", {}], "sampler_name": [["euler"], {}]}}},
        "Odd": {"input": {"required": {"x": "INT"}}},
    }
    found = file_name_inputs(info)
    assert found["LoadImage"] == {"image"}
    assert found["CheckpointLoaderSimple"] == {"ckpt_name"}
    assert found["LoadVideo"] == {"file"}
    assert found["KSampler"] == {"sampler_name"}
    assert "Odd" not in found


@pytest.mark.parametrize(
    "value, unsafe",
    [
        ("photo.png", False),
        ("clips/day1/a.mp4", False),
        ("photo.png [input]", False),
        ("/etc/passwd", True),
        ("../../secret.png", True),
        ("a/../../b.png [input]", True),
        ("C:/Windows/win.ini", True),
        ("~/.ssh/id_rsa", True),
    ],
)
def test_file_inputs_that_leave_comfyuis_folders_are_found(value, unsafe):
    workflow = Workflow({"7": {"class_type": "LoadImage", "inputs": {"image": value}}})
    found = workflow.unsafe_file_inputs({"LoadImage": frozenset({"image"})})
    assert bool(found) is unsafe
    if unsafe:
        assert found[0][0] == "input.workflow.7.inputs.image"


def test_file_references_are_renamed_in_every_node():
    workflow = Workflow(
        {
            "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "2": {"class_type": "LoadImageMask", "inputs": {"image": "a.png [input]", "channel": "alpha"}},
            "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a.png is a file name in a prompt"}},
        }
    )
    renamed = workflow.with_files_renamed({"a.png": "_job-1/a.png"}).to_prompt()
    assert renamed["1"]["inputs"]["image"] == "_job-1/a.png"
    assert renamed["2"]["inputs"]["image"] == "_job-1/a.png [input]"
    assert renamed["3"] == workflow.to_prompt()["3"]
    assert workflow.with_files_renamed({}) is workflow


def test_shared_upstream_nodes_are_not_a_cycle():
    diamond = {
        "1": {"class_type": "Model", "inputs": {}},
        "2": {"class_type": "A", "inputs": {"m": ["1", 0]}},
        "3": {"class_type": "B", "inputs": {"m": ["1", 0], "a": ["2", 0]}},
        "4": {"class_type": "C", "inputs": {"a": ["2", 0], "b": ["3", 0], "m": ["1", 1]}},
    }
    assert Workflow(diamond).link_problems() == []
    assert Workflow({"1": {"class_type": "Loop", "inputs": {"x": ["1", 0]}}}).link_problems() == [
        ("input.workflow", "has a cycle: 1 (Loop) -> 1 (Loop)")
    ]


def test_n3_close_matches_are_searched_for_the_first_few_unknown_types_only(monkeypatch):
    """20,000 unknown nodes each searched against every known type froze the event loop for a
    minute: suggestions now go to the first SUGGESTED_TYPES types, every node is still named."""
    searched: list[str] = []

    def counting(word, possibilities, n, cutoff):
        searched.append(word)
        return ["SaveImage"] if word == "SaveImag" else []

    monkeypatch.setattr("comfy_worker.request.workflow.difflib.get_close_matches", counting)
    nodes = {str(n): {"class_type": f"Mystery{n}", "inputs": {}} for n in range(20_000)}
    nodes["0"] = {"class_type": "SaveImag", "inputs": {}}
    problems = Workflow.from_api(nodes).unknown_node_types({"SaveImage", "LoadImage"})
    assert len(problems) == 20_000
    assert len(searched) == SUGGESTED_TYPES
    assert "did you mean 'SaveImage'?" in problems[0][1]
    assert problems[-1][0] == "input.workflow.19999.class_type"
