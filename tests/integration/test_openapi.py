"""The endpoint's OpenAPI document, from the real worker: it validates as OpenAPI 3.1, its job
input takes a named workflow's parameters and refuses what they do not allow, and the local
endpoint serves it with its own base URL, from which a job runs as a generated client sends it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME
from tests.support.local_endpoint import API_KEY
from tests.support.workflows import REPO_ROOT, txt2img


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


def test_the_local_endpoint_serves_it_and_a_job_runs_from_it(endpoint):
    base_url = endpoint[0]
    request = urllib.request.Request(f"{base_url}/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        document = json.load(response)
    validate(document)
    [server] = document["servers"]
    assert server["url"] == base_url

    # What a generated client does: the server, the operation's path, a body of the schema.
    body = {"input": {"workflow_name": "txt2img", "params": {"checkpoint": CHECKPOINT_NAME, "steps": 2,
                                                              "width": 64, "height": 64, "seed": 5}}}  # fmt: skip
    job_input_validator(document).validate(body["input"])
    run = urllib.request.Request(
        server["url"] + "/runsync?wait=120000",
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(run, timeout=150) as response:
        status = json.load(response)
    assert status["status"] == "COMPLETED", status
    assert status["output"]["images"][0]["data"], status

    printed = subprocess.run(
        [sys.executable, "-m", "comfy_worker_client", "openapi", "--base-url", base_url, "--api-key", API_KEY],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["components"] == document["components"]
