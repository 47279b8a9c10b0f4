"""Run one prompt on ComfyUI: submit it, follow its events to the end.

Contract: `submit_prompt` queues the workflow on the worker's websocket client id
and returns the prompt id; `wait_for_prompt` returns once ComfyUI reports that
prompt finished (`executing` with `node: null`). A node failure raises `ExecutionFailed` naming the node; events of
other prompts (a previous, cancelled job) are ignored.

Why output nodes are tagged: ComfyUI caches node results, and on a cache hit it
re-reports the files an output node wrote for an earlier prompt without writing
them again. The worker deletes each job's files after the job, so a repeated
workflow would come back empty. `tag_output_nodes` adds an input ComfyUI does not
pass to the node (`get_input_data` skips unknown names) but does hash into the
cache key, so output nodes run again per job while everything upstream (model
loading, sampling) stays cached.
"""

from __future__ import annotations

import logging
from typing import Any

from .comfy_client import ComfyClient, ComfyEvent
from .errors import ExecutionFailed

log = logging.getLogger(__name__)

JOB_TAG_INPUT = "_runpod_job_id"


def output_node_classes(object_info: dict[str, Any]) -> frozenset[str]:
    """Class names that ComfyUI treats as outputs (they write files or show results)."""
    return frozenset(name for name, info in object_info.items() if info.get("output_node"))


def tag_output_nodes(workflow: dict[str, Any], output_classes: frozenset[str], job_id: str) -> dict[str, Any]:
    """A copy of workflow whose output nodes carry the job id (see module docstring)."""
    tagged = dict(workflow)
    for node_id, node in workflow.items():
        if node["class_type"] in output_classes:
            tagged[node_id] = {**node, "inputs": {**node["inputs"], JOB_TAG_INPUT: job_id}}
    return tagged


def execution_error(data: dict[str, Any]) -> ExecutionFailed:
    node = f"node {data.get('node_id')} ({data.get('node_type')})"
    message = f"{node} failed: {data.get('exception_type')}: {str(data.get('exception_message', '')).strip()}"
    details = {key: data.get(key) for key in ("node_id", "node_type", "exception_type", "exception_message")}
    details["traceback"] = data.get("traceback") or []
    return ExecutionFailed(message, details)


async def submit_prompt(client: ComfyClient, workflow: dict[str, Any], extra_data: dict[str, Any]) -> str:
    """Queue the workflow; the websocket is opened first so no event of it is missed."""
    await client.connect_events()
    return await client.queue_prompt(workflow, extra_data)


async def wait_for_prompt(client: ComfyClient, prompt_id: str) -> None:
    """Follow the prompt's events until ComfyUI reports it finished."""
    async for event in client.events():
        if event.prompt_id != prompt_id:
            continue
        if is_prompt_finished(event):
            return
        if event.type == "execution_error":
            raise execution_error(event.data)


def is_prompt_finished(event: ComfyEvent) -> bool:
    return event.type == "executing" and event.data.get("node") is None
