"""comfy_worker/request/openapi.py: the job input's forms, each closed, and every schema a component."""

from __future__ import annotations

import json

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from comfy_worker.request.openapi import openapi_document

PARAMETERS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"size": {"$ref": "#/$defs/Size"}, "prompt": {"type": "string"}},
    "required": ["prompt"],
    "$defs": {"Size": {"enum": [512, 768]}},
}


def test_a_named_workflows_own_definitions_become_components_and_its_required_parameters_stay_required():
    document = openapi_document([{"name": "my flow", "description": "", "parameters": PARAMETERS}])
    validate(document)
    schemas = document["components"]["schemas"]
    variant = schemas["Workflow_my_flow"]
    assert variant["required"] == ["workflow_name", "params"]
    assert variant["properties"]["workflow_name"] == {"const": "my flow"}
    assert variant["properties"]["params"]["properties"]["size"] == {"$ref": "#/components/schemas/Size"}
    assert schemas["Size"] == {"enum": [512, 768]}
    assert "$defs" not in json.dumps(document)
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["JobInput"]["oneOf"]] == [
        "GraphJobInput", "Workflow_my_flow", "ReplayJobInput", "ListJobInput", "ResultOfJobInput",
    ]  # fmt: skip
    assert "timeout_s" in variant["properties"], "a named workflow's job takes the options every job takes"
    assert variant["additionalProperties"] is False


def test_without_named_workflows_the_graph_and_the_questions_remain():
    document = openapi_document([])
    validate(document)
    assert len(document["components"]["schemas"]["JobInput"]["oneOf"]) == 4  # graph, replay, list, result_of
    assert document["paths"]["/status/{job_id}"]["get"]["parameters"][0]["name"] == "job_id"


def test_the_request_examples_are_valid_job_requests_and_skip_workflows_that_need_parameters():
    optional = {key: value for key, value in PARAMETERS.items() if key != "required"}
    document = openapi_document(
        [
            {"name": "needs prompt", "description": "", "parameters": PARAMETERS},
            {"name": "txt2img", "description": "", "parameters": optional},
        ]
    )
    examples = document["paths"]["/run"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    request = OAS31Validator({"$ref": "#/components/schemas/JobRequest", "components": document["components"]})

    assert list(examples) == ["workflow_txt2img", "list_workflows"]  # the first is what "Try it out" starts from
    for example in examples.values():
        request.validate(example["value"])
    assert examples == document["paths"]["/runsync"]["post"]["requestBody"]["content"]["application/json"]["examples"]
