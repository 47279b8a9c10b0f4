"""The endpoint's OpenAPI document, from the real worker: it validates as OpenAPI 3.1, its job
input takes a named workflow's parameters and refuses what they do not allow, and the local
endpoint serves it with its own base URL; a client generated from it by a maintained generator
(openapi-python-client, run by uv in an environment of its own) runs a named workflow."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME
from tests.support.comfyui_server import LOCAL_DIR
from tests.support.local_endpoint import API_KEY, run_cli
from tests.support.workflows import txt2img

GENERATOR = "openapi-python-client==0.29.1"  # run by uv (pinned in pyproject's dev extra) in its own environment


def job_input_validator(document: dict) -> OAS31Validator:
    """Checks a job's input against the document's JobInput, its references resolved in the document."""
    return OAS31Validator({"$ref": "#/components/schemas/JobInput", "components": document["components"]})


async def test_the_document_validates_and_types_each_named_workflows_parameters(run_job):
    document = await run_job({"list": "openapi"})
    validate(document)  # OpenAPI 3.1, by a maintained validator

    assert set(document["paths"]) == {"/run", "/runsync", "/status/{job_id}", "/cancel/{job_id}"}
    schemas = document["components"]["schemas"]
    assert {"Workflow_txt2img", "Workflow_img2img", "GraphJobInput", "ListJobInput"} <= set(schemas)
    assert "$defs" not in json.dumps(document), "every schema is a component (a $defs reference would not resolve)"
    states = schemas["JobStatus"]["properties"]["status"]
    assert schemas[states["$ref"].rsplit("/", 1)[1]]["enum"][:1] == ["IN_QUEUE"]

    job_input = job_input_validator(document)
    job_input.validate({"workflow_name": "txt2img", "params": {"prompt": "a fox", "steps": 2}, "timeout_s": 60.0})
    job_input.validate({"workflow": txt2img(steps=2), "output": {"format": "webp"}})
    job_input.validate({"list": "models"})
    for wrong in (
        {"workflow_name": "txt2img", "params": {"steps": "many"}},  # not an integer
        {"workflow_name": "txt2img", "params": {"no_such_parameter": 1}},
        {"workflow": txt2img(steps=2), "no_such_option": True},
        {"workflow_name": "not-shipped"},
    ):
        with pytest.raises(ValidationError):
            job_input.validate(wrong)


def generated_client(document: dict, folder: Path):
    """The Python package the generator makes of the document, imported."""
    (folder / "openapi.json").write_text(json.dumps(document))
    generated = subprocess.run(
        [str(LOCAL_DIR / "venv" / "bin" / "uv"), "tool", "run", "--from", GENERATOR, "openapi-python-client",
         "generate", "--path", str(folder / "openapi.json"), "--output-path", str(folder / "endpoint_api"),
         "--meta", "none"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stdout[-2000:] + generated.stderr[-2000:]
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("endpoint_api")
    finally:
        sys.path.remove(str(folder))


def test_the_local_endpoint_serves_it_and_a_generated_client_runs_a_named_workflow(endpoint, tmp_path):
    base_url = endpoint[0]
    request = urllib.request.Request(f"{base_url}/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        document = json.load(response)
    validate(document)
    [server] = document["servers"]
    assert server["url"] == base_url

    params = {"checkpoint": CHECKPOINT_NAME, "steps": 2, "width": 64, "height": 64, "seed": 5}
    job_input_validator(document).validate({"workflow_name": "txt2img", "params": params})
    api = generated_client(document, tmp_path)
    runsync = importlib.import_module("endpoint_api.api.default.runsync")
    models = importlib.import_module("endpoint_api.models")
    client = api.AuthenticatedClient(base_url=server["url"], token=API_KEY, timeout=150.0)
    body = models.JobRequest.from_dict({"input": {"workflow_name": "txt2img", "params": params}})
    assert type(body.input_).__name__ == "WorkflowTxt2Img", "the generator made the named workflow's own type"
    with client:
        status = runsync.sync(client=client, body=body)
    answer = status.to_dict()
    assert answer["status"] == "COMPLETED", answer
    assert answer["output"]["images"][0]["data"], answer

    printed = run_cli(base_url, "openapi")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["components"] == document["components"]
