"""The job's contract (comfy_worker/core/contract.py): defined once, its generated copies fresh,
docs/job-api.md's examples and the worker's real results of its shape, and its states,
output lists and limits nowhere else in the code."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from comfy_worker.core import contract
from comfy_worker.core.contract import FINAL_STATES, OUTPUT_LISTS, RUNPOD_REQUEST_LIMITS, JobState, json_schema
from comfy_worker.core.settings import Settings
from tests.support.fake_comfy import FakeComfy, Run, fake_worker
from tests.support.workflows import REPO_ROOT

SCHEMAS = json_schema()


def valid(kind: str, value: object) -> None:
    jsonschema.validate(value, SCHEMAS[kind])


def test_the_generated_copies_are_fresh_and_a_stale_one_is_named(tmp_path, monkeypatch):
    assert contract.main(["check"]) == 0
    copies = {tmp_path / path.name: make for path, make in contract.GENERATED.items()}
    monkeypatch.setattr(contract, "GENERATED", copies)
    monkeypatch.setattr(contract, "REPO_ROOT", tmp_path)
    contract.main(["write"])
    assert contract.main(["check"]) == 0
    next(iter(copies)).write_text("export const FINAL_STATES = [];\n")
    assert contract.main(["check"]) == 1


def json_blocks(section: str) -> list[str]:
    text = (REPO_ROOT / "docs" / "job-api.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```json\n(.*?)```", body, flags=re.DOTALL)


def test_the_documented_result_progress_and_webhook_bodies_are_of_the_contracts_shape():
    result = next(block for block in json_blocks("Job output") if '"images"' in block)
    valid("result", json.loads(result))
    progress = next(block for block in json_blocks("Progress") if '"KSampler: step 15/20"' in block)
    valid("progress", json.loads(progress))
    webhook = next(block for block in json_blocks("Progress") if '"<job id>"' in block)
    for line in webhook.strip().splitlines():
        valid("webhook", json.loads(line))


def test_a_result_of_the_wrong_shape_is_refused():
    with pytest.raises(jsonschema.ValidationError):
        valid("result", {"images": [{"filename": "a.png", "type": "inline", "data": ""}]})
    with pytest.raises(jsonschema.ValidationError):
        valid("error", {"error": "no type"})


async def test_the_workers_results_errors_and_progress_are_of_the_contracts_shape(tmp_path):
    comfyui = tmp_path / "comfyui"
    for folder in ("input", "output", "temp"):
        (comfyui / folder).mkdir(parents=True)
    comfy = FakeComfy(comfyui)
    comfy.runs += [Run.success(), Run.failure("1", "EmptyImage", "out of memory")]
    progress: list[dict] = []
    settings = Settings(comfyui_path=comfyui, comfy_pid_file=tmp_path / "none", workflows_dir=tmp_path / "none")
    worker = fake_worker(settings, comfy, lambda job, payload: progress.append(payload))
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {}}, "2": {"class_type": "SaveImage", "inputs": {}}}

    try:
        done = await worker.handle({"id": "a", "input": {"workflow": workflow}})
        failed = await worker.handle({"id": "b", "input": {"workflow": workflow}})
    finally:
        await worker.close()

    valid("result", json.loads(json.dumps(done)))
    assert done["images"]
    assert done["images"][0]["media"] == "image"
    valid("error", json.loads(json.dumps(failed)))
    assert progress
    for payload in progress:
        valid("progress", json.loads(json.dumps(payload)))


# Code that must read the contract instead of restating it (docs, tests and the generated copies aside).
CODE = [
    path
    for pattern in ("comfy_worker/**/*.py", "comfy_worker_client/*.py", "local_endpoint/*.py",
                    "local_endpoint/page/*.js", "editor_extension/*.py", "editor_extension/web/*.js", "rp_handler.py",
                    "benchmarks/*.py")
    for path in REPO_ROOT.glob(pattern)
    if path.name not in ("contract.py", "contract.js")
]  # fmt: skip


def test_the_check_reads_every_product_folder():
    """A folder moved or renamed must not drop out of the check unnoticed."""
    folders = {path.relative_to(REPO_ROOT).parts[0] for path in CODE}
    assert folders >= {"comfy_worker", "comfy_worker_client", "local_endpoint", "editor_extension", "benchmarks"}
    assert any(path.parent.name == "comfyui" for path in CODE), "the worker's rooms are read"


def code_of(path) -> str:
    """The file without its docstrings and comments (prose may name the states)."""
    text = path.read_text()
    text = re.sub(r'"""(.*?)"""', "", text, flags=re.DOTALL)
    return "\n".join(re.split(r"\s(?:#|//) ", line)[0] for line in text.splitlines())


@pytest.mark.parametrize("path", CODE, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_states_output_lists_and_limits_live_only_in_the_contract(path):
    code = code_of(path)
    restated = [f'"{state}"' for state in JobState if f'"{state}"' in code]
    lists = ['"videos"', r'"audio",\s*"files"']  # "images", "audio" and "files" also name other things
    restated += [found for pattern in lists for found in re.findall(pattern, code)]
    restated += [
        str(limit) for limit in RUNPOD_REQUEST_LIMITS.values() if re.search(rf"\b{limit:_}\b|\b{limit}\b", code)
    ]
    assert not restated, f"restates the job contract (comfy_worker/core/contract.py): {restated}"


def test_the_contract_is_what_the_docs_say():
    assert FINAL_STATES == {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
    assert list(OUTPUT_LISTS.values()) == ["images", "videos", "audio", "files"]
    assert RUNPOD_REQUEST_LIMITS == {"/run": 10 * 10**6, "/runsync": 20 * 10**6}
