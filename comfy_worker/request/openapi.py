"""The endpoint's API as an OpenAPI 3.1 document, so any language's generator makes a typed client.

Contract: `openapi_document(named_workflows)` returns the document for RunPod's
`/run`, `/runsync`, `/status/{job_id}` and `/cancel/{job_id}` with this worker's job
input: the graph form (`JobInput`), and one variant per named workflow with its
parameters' schema (`named_workflows` is what `{"list": "workflows"}` answers). The
result, the error result and the progress update come from the job contract
(`core/contract.py`), the job states too. Pure: `{"list": "openapi"}` answers it, the
local endpoint serves it at `/openapi.json`, `comfy-client openapi` prints it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..core import contract
from ..core.contract import FINAL_STATES, JobState
from .job_input import JobInput

OPENAPI_VERSION = "3.1.0"
RUNPOD_SERVER = "https://api.runpod.ai/v2/{endpoint_id}"
SCHEMAS = "#/components/schemas/"
_NAME = re.compile(r"[^A-Za-z0-9_]")


def openapi_document(named_workflows: Sequence[Mapping[str, Any]], title: str = "ComfyUI worker") -> dict[str, Any]:
    """The document, its schemas under `components.schemas` (no `$defs` left inside them)."""
    schemas: dict[str, Any] = {}
    variants = _input_variants(named_workflows, schemas)
    schemas.update(variants)
    schemas["JobInput"] = {
        "description": "A job's input: a graph, a named workflow and its parameters, or a question (list)",
        "oneOf": [{"$ref": f"{SCHEMAS}{name}"} for name in variants],
    }
    for name, schema in contract.json_schema().items():
        schemas[f"Job{name.capitalize()}"] = _hoist(schema, schemas)
    schemas["JobState"] = {"type": "string", "enum": [state.value for state in JobState]}
    schemas["JobRequest"] = {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {"$ref": f"{SCHEMAS}JobInput"},
            "webhook": {"type": "string", "description": "RunPod POSTs the final status here"},
            "policy": {"type": "object", "description": "RunPod's execution policy (executionTimeout, ttl, ...)"},
        },
    }
    schemas["JobStatus"] = {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string"},
            "status": {"$ref": f"{SCHEMAS}JobState"},
            "output": {
                "description": "The result when COMPLETED, the error result when FAILED, the latest progress "
                "update while IN_PROGRESS",
                "anyOf": [
                    {"$ref": f"{SCHEMAS}JobResult"},
                    {"$ref": f"{SCHEMAS}JobError"},
                    {"$ref": f"{SCHEMAS}JobProgress"},
                ],
            },  # fmt: skip
            "error": {"type": "string"},
            "delayTime": {"type": "integer", "description": "ms in RunPod's queue"},
            "executionTime": {"type": "integer", "description": "ms running"},
        },
    }
    examples = _request_examples(named_workflows)
    final = ", ".join(state.value for state in JobState if state in FINAL_STATES)
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": "1",
            "description": "RunPod's serverless API with this endpoint's job input. A job ends in one of "
            f"{final}; poll /status until then, or use /runsync.",
        },
        "servers": [{"url": RUNPOD_SERVER, "variables": {"endpoint_id": {"default": "your-endpoint-id"}}}],
        "security": [{"bearer": []}],
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/run": {"post": _operation("run", "Queue a job; poll /status/{job_id}", "JobStatus", examples=examples)},
            "/runsync": {
                "post": _operation(
                    "runsync", "Run a job and wait for it (RunPod waits up to ~90 s)", "JobStatus", examples=examples
                )
            },
            "/status/{job_id}": {"get": _operation("status", "A job's state and output", "JobStatus", job_id)},
            "/cancel/{job_id}": {"post": _operation("cancel", "Cancel a job", "JobStatus", job_id)},
        },
    }


def _request_examples(named_workflows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Ready-to-send request bodies (a generated client's docs and "Try it out" start from them):
    each named workflow that needs no parameter, then a question."""
    examples = {
        f"workflow_{_NAME.sub('_', str(named['name']))}": {
            "summary": f"The named workflow '{named['name']}', its parameters' defaults",
            "value": {"input": {"workflow_name": named["name"], "params": {}}},
        }
        for named in named_workflows
        if "required" not in named["parameters"]  # as _input_variants reads it: only when some are
    }
    examples["list_workflows"] = {
        "summary": "What the worker offers: its named workflows",
        "value": {"input": {"list": "workflows"}},
    }
    return examples


def _operation(
    name: str,
    summary: str,
    answer: str,
    parameters: list[dict[str, Any]] | None = None,
    examples: dict[str, Any] | None = None,
) -> dict:
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"{SCHEMAS}{answer}"}}}},
            "401": {"description": "The API key was refused"},
        },
    }
    if parameters:
        operation["parameters"] = parameters
    else:
        body: dict[str, Any] = {"schema": {"$ref": f"{SCHEMAS}JobRequest"}}
        if examples:
            body["examples"] = examples
        operation["requestBody"] = {"required": True, "content": {"application/json": body}}
    return operation


def _input_variants(named_workflows: Sequence[Mapping[str, Any]], schemas: dict[str, Any]) -> dict[str, Any]:
    """The job input's forms, each closed (no other keys): the graph, each named workflow,
    and a `list` question; the options any job takes (output, timeout_s, ...) in the first two."""
    properties = _hoist(JobInput.model_json_schema(by_alias=True), schemas)["properties"]
    own = {"workflow", "ui_workflow", "workflow_name", "params", "list", "result_of", "replay"}
    options = {key: value for key, value in properties.items() if key not in own}
    workflow = {
        "description": "The graph: ComfyUI's API format (node id -> node), or its UI format (nodes and links)",
        "anyOf": [properties["workflow"]["anyOf"][0], {"type": "object", "required": ["nodes", "links"]}],
    }
    variants = {"GraphJobInput": _closed({**options, "workflow": workflow}, ["workflow"], "A graph to run")}
    for named in named_workflows:
        parameters = _hoist(dict(named["parameters"]), schemas)
        fields = {**options, "workflow_name": {"const": named["name"]}, "params": parameters}
        required = ["workflow_name", "params"] if "required" in parameters else ["workflow_name"]
        description = named.get("description") or f"The named workflow '{named['name']}'"
        variants[f"Workflow_{_NAME.sub('_', str(named['name']))}"] = _closed(fields, required, description)
    replay = {**options, "replay": properties["replay"]["anyOf"][0]}
    del replay["randomize_seeds"]
    variants["ReplayJobInput"] = _closed(
        replay, ["replay"], "A result's provenance: its graph again, if this worker matches"
    )
    question = {"list": properties["list"]["anyOf"][0]}
    variants["ListJobInput"] = _closed(
        question, ["list"], "What the worker offers (workflows, models, nodes, this document)"
    )
    lookup = {"result_of": properties["result_of"]["anyOf"][0]}
    variants["ResultOfJobInput"] = _closed(
        lookup, ["result_of"], "The result a submit with this idempotency_key left (nothing runs)"
    )
    return variants


def _closed(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _hoist(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `$defs` moved into `schemas` and its references pointed there:
    in an OpenAPI document, `#/$defs/...` would point at the document's root."""
    schema = copy.deepcopy(schema)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, _rewrite(definition))
    rewritten: dict[str, Any] = _rewrite(schema)
    return rewritten


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (value.replace("#/$defs/", SCHEMAS) if key == "$ref" and isinstance(value, str) else _rewrite(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    return node
