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
from pydantic import BaseModel

from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.core.errors import InvalidJobInput, WorkerError
from comfy_worker.core.settings import Settings
from comfy_worker.request.job_input import InputFile, JobInput, ModelCredentials, OutputOptions, parse_job_input
from tests.support.fake_comfy import FakeComfy, fake_worker, png_bytes


def error_types(cls: type[WorkerError] = WorkerError) -> set[str]:
    """Every documented error_type: the error classes' own, derived from the hierarchy."""
    return {sub.error_type for sub in cls.__subclasses__()} | {
        t for sub in cls.__subclasses__() for t in error_types(sub)
    }


ERROR_TYPES = error_types()
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
    return st.tuples(st.sampled_from(mutation_paths()), json_values).map(lambda change: replaced(VALID, *change))


def mutation_paths() -> list[tuple[str | int, ...]]:
    """Every field of the job input, at every depth, derived from the schema (so a new field
    is mutated too), plus the workflow's own shape and an unknown key."""
    paths: list[tuple[str | int, ...]] = [
        ("workflow", "1"),
        ("workflow", "1", "class_type"),
        ("workflow", "1", "inputs"),
        ("workflow", "2", "inputs", "images"),
        ("images", 0),
        ("unknown_field",),
    ]
    nested: dict[str, tuple[tuple[str | int, ...], type[BaseModel]]] = {
        "images": (("images", 0), InputFile),
        "output": (("output",), OutputOptions),
        "model_credentials": (("model_credentials",), ModelCredentials),
    }
    for name, field in JobInput.model_fields.items():
        if name == "ui_workflow":  # set by the parser from a UI-format `workflow`, not a job field
            continue
        key = field.alias or name
        paths.append((key,))
        if key in nested:
            prefix, model = nested[key]
            paths += [(*prefix, sub) for sub in model.model_fields]
    return paths


def test_the_mutations_cover_every_field_of_the_schema():
    covered = {path[0] for path in mutation_paths()}
    assert {field.alias or name for name, field in JobInput.model_fields.items()} - covered == {"ui_workflow"}


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


def run_jobs_in_flight(job_inputs: list) -> None:
    """The jobs at once on one worker (as with JOBS_IN_FLIGHT = len(job_inputs)): each gets a
    documented result, and ComfyUI's folders are left as they were."""
    with tempfile.TemporaryDirectory() as base, tempfile.TemporaryDirectory() as worker_dir:
        comfyui_path = Path(base)
        for folder in ("input", "output", "temp"):
            (comfyui_path / folder).mkdir()
        comfy = FakeComfy(comfyui_path)
        # The node snapshot is the worker's own file: kept apart, so ComfyUI's folder must end as it began.
        snapshot = str(Path(worker_dir) / "object-info.json")
        settings = Settings(comfyui_path=comfyui_path, comfy_pid_file=comfyui_path / "none", nodes_snapshot=snapshot)
        worker = fake_worker(settings, comfy, process=ComfyProcess(comfyui_path / "none"))

        async def run() -> list:
            try:
                jobs = [worker.handle({"id": f"fuzz-{i}", "input": job}) for i, job in enumerate(job_inputs)]
                return await asyncio.gather(*jobs)
            finally:
                await worker.close()

        for result in asyncio.run(run()):
            assert isinstance(result, dict)
            if "error" in result:
                assert isinstance(result["error"], str), result
                assert result["error_type"] in ERROR_TYPES, result
                assert result["error_type"] != "internal_error", result
            else:
                assert result["images"], result
        assert [p for p in comfyui_path.rglob("*") if p.is_file()] == []
        assert sorted(p.name for p in comfyui_path.iterdir()) == ["input", "output", "temp"]


@given(mutated_jobs())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_job_gets_a_documented_result_and_leaves_no_file(job_input):
    run_jobs_in_flight([job_input])


@given(mutated_jobs(), mutated_jobs())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_two_jobs_in_flight_get_documented_results_and_leave_no_file(first, second):
    run_jobs_in_flight([first, second])


@given(st.text(min_size=1, max_size=80))
@settings(max_examples=200, deadline=None)
def test_any_input_name_is_kept_verbatim_or_refused_with_its_field(name):
    try:
        job = parse_job_input({**VALID, "images": [{"name": name, "image": "eA=="}]})
    except InvalidJobInput as error:
        assert {p["field"] for p in error.details["problems"]} == {"input.images[0].name"}
    else:
        assert job.images[0].name == name
