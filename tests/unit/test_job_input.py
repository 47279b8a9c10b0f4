import base64
import json

import pytest

from comfy_worker.core.errors import InvalidJobInput
from comfy_worker.core.sources import BucketObject, Inline, WebFile
from comfy_worker.request.job_input import parse_job_input

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
    assert job.workflow.to_prompt() == {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
    assert [i.image for i in job.images] == [Inline(b"\x89PNG..."), Inline(b"\x89PNG...")]


def test_input_may_be_a_json_string():
    assert parse_job_input(json.dumps({"workflow": WORKFLOW})).workflow.class_type("1") == "EmptyImage"


def test_node_meta_is_kept_for_comfyui():
    node = {"class_type": "X", "inputs": {}, "_meta": {"title": "Mine"}}
    assert parse_job_input({"workflow": {"1": node}}).workflow.to_prompt()["1"]["_meta"] == {"title": "Mine"}


def test_every_problem_is_reported_with_its_field():
    found = problems({"workflow": {"5": {"inputs": []}}, "images": [{"name": "../up.png", "image": "%%%"}], "extra": 1})
    assert found["input.workflow.5.class_type"] == "is required"
    assert "valid dictionary" in found["input.workflow.5.inputs"]
    assert "plain file name" in found["input.images[0].name"]
    assert "not valid base64" in found["input.images[0].image"]
    assert found["input.extra"] == "is not a known field"


def test_missing_workflow():
    assert problems({"images": []}) == {
        "input.workflow": "is required (or name a shipped workflow with 'workflow_name', or ask 'list')"
    }


def test_empty_workflow():
    assert problems({"workflow": {}})["input.workflow"] == "has no nodes"


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


def test_ui_format_workflow_is_kept_for_the_worker_to_convert():
    ui = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}
    request = parse_job_input({"workflow": ui})
    assert request.workflow is None
    assert request.ui_workflow == ui


def test_saved_images_carry_the_jobs_metadata_else_its_ui_graph():
    ui = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}
    assert parse_job_input({"workflow": ui}).extra_data() == {"extra_pnginfo": {"workflow": ui}}
    assert parse_job_input({"workflow": WORKFLOW}).extra_data() == {}
    given = {"workflow": {"nodes": []}, "app": "mine"}
    assert parse_job_input({"workflow": ui, "extra_pnginfo": given}).extra_data() == {"extra_pnginfo": given}
    assert problems({"workflow": WORKFLOW, "extra_pnginfo": "x"}) == {
        "input.extra_pnginfo": "input should be a valid dictionary"
    }


def test_named_workflow_with_params_and_seeds():
    request = parse_job_input({"workflow_name": "txt2img", "params": {"seed": 3}, "randomize_seeds": True})
    assert (request.workflow_name, request.params, request.randomize_seeds) == ("txt2img", {"seed": 3}, True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"workflow": WORKFLOW, "list": "models"}, "give exactly one of"),
        ({"workflow": WORKFLOW, "params": {"seed": 1}}, "'params' go with 'workflow_name'"),
        ({"workflow_name": "a", "list": "workflows"}, "got workflow_name and list"),
    ],
)
def test_one_request_per_job(raw, expected):
    assert expected in problems(raw)["input"]


def test_list_takes_workflows_models_nodes_or_openapi():
    assert parse_job_input({"list": "models"}).list_what == "models"
    assert parse_job_input({"list": "nodes"}).list_what == "nodes"
    assert parse_job_input({"list": "openapi"}).list_what == "openapi"
    assert problems({"list": "loras"}) == {"input.list": "input should be 'workflows', 'models', 'nodes' or 'openapi'"}


def test_ui_workflow_is_not_a_field_users_send():
    assert (
        "send a UI-format graph as 'workflow'" in problems({"ui_workflow": {}, "list": "models"})["input.ui_workflow"]
    )


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


def test_url_and_subfolder_inputs():
    job = parse_job_input(
        {
            "workflow": WORKFLOW,
            "images": [
                {"name": "a.mp4", "image": "https://cdn.example.com/a.mp4", "subfolder": "clips/day1"},
            ],
        }
    )
    [file] = job.images
    assert (file.image, file.subfolder) == (WebFile("https://cdn.example.com/a.mp4"), "clips/day1")


@pytest.mark.parametrize("subfolder", ["../x", "/abs", "a/../../b", "a\\b", "./a"])
def test_subfolders_that_escape_are_refused(subfolder):
    image = {"name": "a.png", "subfolder": subfolder, "image": base64.b64encode(b"x").decode()}
    assert "input.images[0].subfolder" in problems({"workflow": WORKFLOW, "images": [image]})


def test_output_options_defaults_and_validation():
    assert parse_job_input({"workflow": WORKFLOW}).output.model_dump() == {
        "format": "png",
        "quality": 90,
        "storage": "auto",
        "include_previews": False,
    }
    found = problems({"workflow": WORKFLOW, "output": {"format": "gif", "quality": 0, "storage": "ftp"}})
    assert set(found) == {"input.output.format", "input.output.quality", "input.output.storage"}


def test_timeout_is_bounded_by_the_maximum():
    assert parse_job_input({"workflow": WORKFLOW, "timeout_s": 30}, max_timeout_s=60).timeout_s == 30
    with pytest.raises(InvalidJobInput, match=r"input.timeout_s: must be at most 60 \(JOB_TIMEOUT_MAX_S\)"):
        parse_job_input({"workflow": WORKFLOW, "timeout_s": 61}, max_timeout_s=60)
    assert "greater than 0" in problems({"workflow": WORKFLOW, "timeout_s": 0})["input.timeout_s"]


# -- forms and limits (issue 11: defects 3, 5, 14, 15) ---------------------------------

RAW = bytes(range(256)) * 3


@pytest.mark.parametrize(
    "encoded",
    [
        base64.encodebytes(RAW).decode(),  # wrapped at 76 columns
        base64.b64encode(RAW).decode().rstrip("="),  # no padding
        base64.urlsafe_b64encode(RAW).decode(),  # URL-safe alphabet
        "data:image/png;charset=utf-8;base64," + base64.b64encode(RAW).decode(),  # data URI with parameters
    ],
)
def test_common_base64_forms_are_accepted(encoded):
    job = parse_job_input({"workflow": WORKFLOW, "images": [{"name": "a.png", "image": encoded}]})
    assert job.images[0].image == Inline(RAW)


@pytest.mark.parametrize(
    "name, problem",
    [
        ("a\nb.png", "control character"),
        ("a\rb.png", "control character"),
        ("é" * 130 + ".png", "at most 255 bytes"),
    ],
)
def test_names_that_no_file_system_or_log_takes_are_refused(name, problem):
    assert (
        problem in problems({"workflow": WORKFLOW, "images": [{"name": name, "image": "eA=="}]})["input.images[0].name"]
    )


@pytest.mark.parametrize("url", ["http://example.com:abc/x.png", "http://example.com:70000/x.png"])
def test_urls_with_invalid_ports_are_refused(url):
    found = problems({"workflow": WORKFLOW, "images": [{"name": "a.png", "image": url}]})
    assert found["input.images[0].image"] == "is a URL with an invalid port"


@pytest.mark.parametrize("field, value", [("timeout_s", True), ("timeout_s", "5"), ("preview", "yes"), ("preview", 1)])
def test_types_are_strict(field, value):
    assert field in str(problems({"workflow": WORKFLOW, field: value}))


def test_links_to_missing_nodes_and_cycles_are_named():
    workflow = {
        "1": {"class_type": "A", "inputs": {"x": ["3", 0]}},
        "2": {"class_type": "B", "inputs": {"x": ["1", 0]}, "_meta": {"title": "Bee"}},
        "3": {"class_type": "C", "inputs": {"x": ["2", 0], "y": ["9", 0]}},
    }
    found = problems({"workflow": workflow})
    assert found["input.workflow.3.inputs.y"] == "links to node 9, which is not in the workflow"
    assert found["input.workflow"] == "has a cycle: 1 (A) -> 3 (C) -> 2 (Bee) -> 1 (A)"


def test_issue20_3_a_json_string_nested_past_any_limit_is_an_input_error():
    found = problems("[" * 100_000 + "]" * 100_000)
    assert found == {"input": "is a JSON string nested deeper than 64 levels"}


def test_issue20_3_a_node_input_nested_thousands_deep_is_an_input_error_naming_where():
    value: list = []
    for _ in range(5_000):
        value = [value]
    found = problems({"workflow": {"1": {"class_type": "EmptyImage", "inputs": {"width": value}}}})
    ((field, problem),) = found.items()
    assert field.startswith("input.workflow.1.inputs.width[0][0]")
    assert problem == "is nested deeper than 64 levels of lists and objects"


def test_issue20_3_ordinary_nesting_is_accepted():
    value: list = [1]
    for _ in range(40):
        value = [value]
    assert parse_job_input({"workflow": {"1": {"class_type": "X", "inputs": {"v": value}}}}).workflow


def test_a_jobs_own_storage_is_strict_and_keeps_its_secrets():
    storage = {
        "endpoint_url": "https://s3.example.com",
        "bucket": "outputs",
        "access_key_id": "AKIA-VERY-SECRET",
        "secret_access_key": "very-secret-key",
        "url_expiry_s": 600,
    }
    job = parse_job_input({"workflow": WORKFLOW, "storage": storage, "output": {"storage": "s3"}}, has_bucket=False)
    assert job.storage is not None
    assert job.storage.secret_access_key.get_secret_value() == "very-secret-key"
    assert "very-secret-key" not in repr(job)
    assert "AKIA-VERY-SECRET" not in repr(job)

    cases = {
        "input.storage.endpoint_url": {**storage, "endpoint_url": "ftp://s3.example.com"},
        "input.storage.url_expiry_s": {**storage, "url_expiry_s": 8 * 24 * 3600},
        "input.storage.secret_access_key": {k: v for k, v in storage.items() if k != "secret_access_key"},
        "input.storage.colour": {**storage, "colour": "blue"},
    }
    for field, bad in cases.items():
        with pytest.raises(InvalidJobInput) as info:
            parse_job_input({"workflow": WORKFLOW, "storage": bad})
        assert [problem["field"] for problem in info.value.details["problems"]] == [field]
        assert "very-secret-key" not in info.value.message


def test_s3_references_need_a_bucket_and_a_key():
    job = parse_job_input({"workflow": WORKFLOW, "images": [{"name": "a.png", "image": "s3://b/in/a.png"}]})
    assert job.images[0].image == BucketObject("b", "in/a.png")
    for reference in ("s3://", "s3://bucket", "s3://bucket/"):
        with pytest.raises(InvalidJobInput) as info:
            parse_job_input({"workflow": WORKFLOW, "images": [{"name": "a.png", "image": reference}]})
        assert "s3://bucket/path/to/file.png" in info.value.message


@pytest.mark.parametrize("reference", ["s3://a/../b/secret.png", "s3://a/x/./y.png", "s3://a/x//y.png", "s3://a/.."])
def test_an_s3_key_with_dot_or_empty_segments_is_refused_naming_the_field(reference):
    """N14: the HTTP client removes dot segments from the signed URL, so s3://a/../b/x would read
    bucket b with a signature made for bucket a."""
    with pytest.raises(InvalidJobInput) as info:
        parse_job_input({"workflow": WORKFLOW, "images": [{"name": "a.png", "image": reference}]})
    assert [problem["field"] for problem in info.value.details["problems"]] == ["input.images[0].image"]
    assert "'..' segment" in info.value.message


def test_a_progress_webhook_is_an_http_url():
    job = parse_job_input({"workflow": WORKFLOW, "progress_webhook": "https://app.example.com/hooks/comfy?t=1"})
    assert job.progress_webhook == "https://app.example.com/hooks/comfy?t=1"
    for bad in ("ftp://app.example.com/x", "https://", "https://app.example.com/a b", 7, "https://x.com/" + "a" * 2048):
        with pytest.raises(InvalidJobInput) as info:
            parse_job_input({"workflow": WORKFLOW, "progress_webhook": bad})
        assert [problem["field"] for problem in info.value.details["problems"]] == ["input.progress_webhook"], bad
