import base64
import json

import pytest

from comfy_worker.errors import InvalidJobInput
from comfy_worker.job_input import parse_job_input

WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}


def problems(raw) -> dict[str, str]:
    with pytest.raises(InvalidJobInput) as info:
        parse_job_input(raw)
    return {p["field"]: p["problem"] for p in info.value.details["problems"]}


def test_parses_workflow_and_decodes_images():
    data = base64.b64encode(b"\x89PNG...").decode()
    job = parse_job_input(
        {
            "workflow": WORKFLOW,
            "images": [
                {"name": "a.png", "image": data},
                {"name": "b.png", "image": "data:image/png;base64," + data},
            ],
        }
    )
    assert job.workflow_dict() == {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
    assert [i.image for i in job.images] == [b"\x89PNG...", b"\x89PNG..."]


def test_input_may_be_a_json_string():
    assert parse_job_input(json.dumps({"workflow": WORKFLOW})).workflow["1"].class_type == "EmptyImage"


def test_node_meta_is_kept_for_comfyui():
    node = {"class_type": "X", "inputs": {}, "_meta": {"title": "Mine"}}
    assert parse_job_input({"workflow": {"1": node}}).workflow_dict()["1"]["_meta"] == {"title": "Mine"}


def test_every_problem_is_reported_with_its_field():
    found = problems({"workflow": {"5": {"inputs": []}}, "images": [{"name": "../up.png", "image": "%%%"}], "extra": 1})
    assert found["input.workflow.5.class_type"] == "is required"
    assert "valid dictionary" in found["input.workflow.5.inputs"]
    assert "plain file name" in found["input.images[0].name"]
    assert "not valid base64" in found["input.images[0].image"]
    assert found["input.extra"] == "is not a known field"


def test_missing_workflow():
    assert problems({"images": []}) == {"input.workflow": "is required"}


def test_empty_workflow():
    assert "at least 1 item" in problems({"workflow": {}})["input.workflow"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("not json", "is a string but not valid JSON"),
        ([1, 2], "must be an object, got list"),
        (None, "must be an object, got NoneType"),
    ],
)
def test_input_that_is_not_an_object(raw, expected):
    assert problems(raw)["input"].startswith(expected)


def test_ui_format_workflow_gets_instructions():
    found = problems({"workflow": {"nodes": [], "links": [], "version": 0.4}})
    assert "Export (API)" in found["input.workflow"]


def test_duplicate_image_names_are_refused():
    image = {"name": "a.png", "image": base64.b64encode(b"x").decode()}
    assert "repeated: a.png" in problems({"workflow": WORKFLOW, "images": [image, image]})["input.images"]


@pytest.mark.parametrize("name", ["", "..", "a/b.png", "/etc/passwd", "..\\x.png", "a\0b"])
def test_file_names_with_paths_are_refused(name):
    image = {"name": name, "image": base64.b64encode(b"x").decode()}
    assert "input.images[0].name" in problems({"workflow": WORKFLOW, "images": [image]})


def test_api_key_is_secret_in_repr():
    job = parse_job_input({"workflow": WORKFLOW, "comfy_org_api_key": "sk-very-secret"})
    assert "sk-very-secret" not in repr(job)
    assert job.comfy_org_api_key.get_secret_value() == "sk-very-secret"
