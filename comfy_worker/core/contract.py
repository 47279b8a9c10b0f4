"""The job's contract with whoever sends it, defined once: the endpoint's job states,
the kinds of output and the lists they come back in, RunPod's size limits, and the
shapes of a result, an output entry, an error result, a progress update and a progress
webhook's body (docs/job-api.md tells them in prose).

Every consumer reads them from here instead of restating them: the worker builds its
results through these names, and the local endpoint imports them. What is installed
apart from this package gets a generated copy of the values: the endpoint client (its
command line, MCP server, and the editor's bridge through it) reads
`comfy_worker_client/contract.py`, the two JavaScript front ends (the jobs page, the
editor extension) import `contract.js`:

    python -m comfy_worker.core.contract write    # regenerate the generated copies
    python -m comfy_worker.core.contract check    # fail if one differs from what `write` makes
    python -m comfy_worker.core.contract schema   # the JSON Schema of a result and a progress update

The standard library and typing_extensions only at import (the schema needs pydantic,
imported when asked), so the client can read it without the worker's dependencies.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict  # pydantic reads this one on Python 3.11 too


class JobState(StrEnum):
    """A job's status, as RunPod's /status and the local endpoint report it."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"  # RunPod's execution timeout


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT})
RETRYABLE_STATES = frozenset({JobState.FAILED, JobState.TIMED_OUT})  # what /retry takes back


class Media(StrEnum):
    """What an output file is."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    FILE = "file"


OUTPUT_LISTS: dict[Media, str] = {
    Media.IMAGE: "images",
    Media.VIDEO: "videos",
    Media.AUDIO: "audio",
    Media.FILE: "files",
}
"""The result's list for each kind of output file ("text" holds texts, not files)."""
TEXT_LIST = "text"

RUNPOD_REQUEST_LIMITS = {"/run": 10_000_000, "/runsync": 20_000_000}
"""Bytes: RunPod refuses a larger request body (413) on these routes."""
RUNPOD_RESULT_LIMIT_BYTES = 10_000_000
"""Bytes: RunPod refuses a larger job result at job-done, and the caller sees no output."""


class OutputEntry(TypedDict):
    """One output file: inline (`type` "base64", `data` the bytes) or in a bucket
    (`type` "s3_url", `data` a presigned URL)."""

    filename: str
    type: Literal["base64", "s3_url"]
    data: str
    node_id: str
    subfolder: str
    media: Media
    mime_type: str
    animated: NotRequired[bool]


class TextEntry(TypedDict):
    node_id: str
    text: str


class JobResult(TypedDict):
    """A COMPLETED job's output: `images` always, the other lists when not empty."""

    images: list[OutputEntry]
    videos: NotRequired[list[OutputEntry]]
    audio: NotRequired[list[OutputEntry]]
    files: NotRequired[list[OutputEntry]]
    text: NotRequired[list[TextEntry]]
    workflow_format: NotRequired[Literal["api", "ui"]]
    workflow_name: NotRequired[str]
    seeds: NotRequired[dict[str, int]]
    timings: NotRequired[dict[str, float]]
    progress_webhook: NotRequired[dict[str, int]]  # with a progress webhook: POSTs made, failed, dropped
    provenance: NotRequired[Provenance]  # every run's: what made it
    repeat_of: NotRequired[str]  # a repeated submit (its idempotency_key done before): the job that ran it
    valid: NotRequired[bool]  # a validate-only job's answer (nothing ran)
    nodes: NotRequired[int]  # ...and the size of the graph it checked


class Provenance(TypedDict):
    """What made a result (`models/provenance.py`); sent back as `{"replay": ...}` it runs again."""

    comfyui: dict[str, str | None]  # version, commit
    node_packs: dict[str, str]  # custom_nodes folder -> pinned commit, or "files:<sha256>"
    models: dict[str, str | None]  # "<folder>/<file>" -> sha256
    seeds: dict[str, int]
    workflow: dict[str, Any]  # the API graph as the job gave it


class VolumePack(TypedDict):
    """A node pack from the network volume's ComfyUI/custom_nodes, as `{"list": "nodes"}`
    reports it in `volume_packs` (`node_packs/volume_packs.py`): `loaded` (ComfyUI lists its
    `nodes` node types), `failed` (ComfyUI could not import it: `error`) or `refused` (the
    worker did not let ComfyUI load it: `error`, a requirement that conflicts with the
    image's pin, say)."""

    state: Literal["loaded", "failed", "refused"]
    pin: str  # the commit it holds, or "files:<sha256>"
    nodes: int
    error: NotRequired[str]


class ErrorResult(TypedDict):
    """A FAILED job's output (the handler's return value): `error` for people,
    `error_type` and `details` for programs; `refresh_worker` asks RunPod for a new worker."""

    error: str
    error_type: str
    details: NotRequired[dict[str, Any]]
    refresh_worker: NotRequired[bool]


class Preview(TypedDict):
    mime_type: str
    data: str


class ProgressUpdate(TypedDict):
    """What /status shows as `output` while the job is IN_PROGRESS."""

    status: str  # "queued", "running", "downloading_models", "collecting_outputs", "waiting" (a repeated submit)...
    message: str
    progress: NotRequired[float]  # the whole workflow's fraction, 0 to 1, never going back
    node_id: NotRequired[str | None]
    node_class: NotRequired[str | None]
    node_title: NotRequired[str | None]
    step: NotRequired[int | None]
    max: NotRequired[int | None]
    nodes_done: NotRequired[int]
    nodes_total: NotRequired[int]
    elapsed_s: NotRequired[float]
    eta_s: NotRequired[float]
    jobs_ahead: NotRequired[int]
    preview: NotRequired[Preview]


class WebhookBody(TypedDict):
    """The body of a progress webhook's POST: each progress update, then the final state."""

    id: str
    status: JobState
    output: NotRequired[dict[str, Any]]  # none when CANCELLED


def output_list(media: str) -> str:
    """The result's list for an output of this media ("files" for any other)."""
    return OUTPUT_LISTS.get(media, OUTPUT_LISTS[Media.FILE])  # type: ignore[call-overload]


def json_schema() -> dict[str, Any]:
    """JSON Schemas of a result, an error result, a progress update and a webhook body."""
    from pydantic import TypeAdapter

    kinds = {"result": JobResult, "error": ErrorResult, "progress": ProgressUpdate, "webhook": WebhookBody}
    return {name: TypeAdapter(kind).json_schema() for name, kind in kinds.items()}


REPO_ROOT = Path(__file__).resolve().parents[2]


def _values() -> dict[str, Any]:
    return {
        "JobState": {state.name: state.value for state in JobState},
        "FINAL_STATES": sorted(state.value for state in FINAL_STATES),
        "RETRYABLE_STATES": sorted(state.value for state in RETRYABLE_STATES),
        "OUTPUT_LISTS": {media.value: name for media, name in OUTPUT_LISTS.items()},
        "RUNPOD_REQUEST_LIMITS": RUNPOD_REQUEST_LIMITS,
        "RUNPOD_RESULT_LIMIT_BYTES": RUNPOD_RESULT_LIMIT_BYTES,
    }


def javascript() -> str:
    """The contract's values for the JavaScript front ends, as an ES module."""
    lines = [
        "// GENERATED from comfy_worker/core/contract.py by `python -m comfy_worker.core.contract write`: do not edit.",
        "// The job's contract: its states, its output lists, RunPod's limits.",
    ]
    for name, value in _values().items():
        frozen = f"Object.freeze({json.dumps(value)})" if isinstance(value, list | dict) else json.dumps(value)
        lines.append(f"export const {name} = {frozen};")
    return "\n".join(lines) + "\n"


def python_copy() -> str:
    """The contract's values for the endpoint client, which is installed (and vendored into the
    editor extension) without the worker."""
    lines = [
        '"""GENERATED from comfy_worker/core/contract.py by `python -m comfy_worker.core.contract write`: do not edit.',
        "",
        'The job\'s contract, as the endpoint client reads it: its states, its output lists, RunPod\'s limits."""',
        "",
        "from enum import StrEnum",
        "",
        "",
        "class JobState(StrEnum):",
        *(f'    {state.name} = "{state.value}"' for state in JobState),
        "",
        "",
    ]
    for name, value in _values().items():
        if name in ("FINAL_STATES", "RETRYABLE_STATES"):
            lines.append(f"{name} = frozenset({json.dumps(value)})")
        elif name != "JobState":
            lines.append(f"{name} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


GENERATED = {
    REPO_ROOT / "local_endpoint" / "page" / "contract.js": javascript,
    REPO_ROOT / "editor_extension" / "web" / "contract.js": javascript,
    REPO_ROOT / "comfy_worker_client" / "contract.py": python_copy,
}


def main(args: list[str]) -> int:
    if args == ["write"]:
        for path, make in GENERATED.items():
            path.write_text(make())
        return 0
    if args == ["check"]:
        stale = [str(path.relative_to(REPO_ROOT)) for path, make in GENERATED.items() if path.read_text() != make()]
        if stale:
            sys.stderr.write(f"out of date: {', '.join(stale)}; run `python -m comfy_worker.core.contract write`\n")
        return 1 if stale else 0
    if args == ["schema"]:
        sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
