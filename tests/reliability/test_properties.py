"""Property-based cases (hypothesis) for malformed input: whatever a client sends, the
worker answers with a documented result, raises nothing else, and leaves ComfyUI's
folders as they were. Run against the scripted ComfyUI, so hundreds of jobs take seconds."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_worker.comfy_process import ComfyProcess
from comfy_worker.errors import InvalidJobInput
from comfy_worker.job_input import parse_job_input
from comfy_worker.settings import Settings
from comfy_worker.worker import Worker
from tests.support.fake_comfy import FakeComfy, png_bytes

ERROR_TYPES = {
    "invalid_input",
    "comfyui_unavailable",
    "comfyui_error",
    "workflow_rejected",
    "execution_failed",
    "interrupted",
    "timeout",
    "output_too_large",
    "output_unreadable",
    "unsafe_path",
    "storage_error",
    "internal_error",
}
VALID = {
    "workflow": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 4}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    },
    "images": [{"name": "in.png", "image": base64.b64encode(png_bytes()).decode()}],
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def mutated_jobs() -> st.SearchStrategy:
    """The valid job with one field (at any depth) replaced by an arbitrary value, or an added key."""
    paths = [
        ("workflow",),
        ("workflow", "1"),
        ("workflow", "1", "class_type"),
        ("workflow", "1", "inputs"),
        ("workflow", "2", "inputs", "images"),
        ("images",),
        ("images", 0),
        ("images", 0, "name"),
        ("images", 0, "image"),
        ("images", 0, "subfolder"),
        ("output",),
        ("timeout_s",),
        ("preview",),
        ("comfy_org_api_key",),
        ("unknown_field",),
    ]
    return st.tuples(st.sampled_from(paths), json_values).map(lambda change: replaced(VALID, *change))


def replaced(value, path, new):
    if not path:
        return new
    if isinstance(value, list):
        copy = list(value)
        copy[path[0]] = replaced(copy[path[0]], path[1:], new)
        return copy
    copy = dict(value)
    copy[path[0]] = replaced(copy.get(path[0], {}), path[1:], new)
    return copy


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_parsing_any_json_raises_only_invalid_input(raw):
    try:
        parse_job_input(raw)
    except InvalidJobInput as error:
        assert error.details["problems"], "an invalid input names at least one problem"


@given(mutated_jobs())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_job_gets_a_documented_result_and_leaves_no_file(job_input):
    with tempfile.TemporaryDirectory() as base:
        comfyui_path = Path(base)
        for folder in ("input", "output", "temp"):
            (comfyui_path / folder).mkdir()
        comfy = FakeComfy(comfyui_path)
        worker = Worker(
            Settings(comfyui_path=comfyui_path, comfy_pid_file=comfyui_path / "none"),
            lambda job, payload: None,
            comfy=comfy,
            store=None,
            process=ComfyProcess(comfyui_path / "none"),
        )
        result = asyncio.run(worker.handle({"id": "fuzz", "input": job_input}))

        assert isinstance(result, dict)
        if "error" in result:
            assert isinstance(result["error"], str) and result["error_type"] in ERROR_TYPES, result
            assert result["error_type"] != "internal_error", result
        else:
            assert result["images"], result
        assert [p for p in comfyui_path.rglob("*") if p.is_file()] == []
        assert sorted(p.name for p in comfyui_path.iterdir()) == ["input", "output", "temp"]


@given(st.text(min_size=1, max_size=80))
@settings(max_examples=200, deadline=None)
def test_any_input_name_is_kept_verbatim_or_refused_with_its_field(name):
    try:
        job = parse_job_input({**VALID, "images": [{"name": name, "image": "eA=="}]})
    except InvalidJobInput as error:
        assert {p["field"] for p in error.details["problems"]} == {"input.images[0].name"}
    else:
        assert job.images[0].name == name
