"""A run on RunPod as an entry of ComfyUI's queue history, where the editor's Queue panel lists it.

`history_entry` builds what ComfyUI's own PromptQueue.task_done keeps for a prompt it ran: the
prompt with its UI workflow (the panel's "load workflow"), the saved outputs by node, and the
status with its timings and error. `History` is where entries go (`QueueHistory` in
`__init__.py`, ComfyUI's own; a fake in tests).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from .endpoint_client import client

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac")
JobState = client.contract.JobState


class History(Protocol):
    """ComfyUI's queue history."""

    def next_number(self) -> int:
        """A queue number above every run's so far (the panel shows only newer entries)."""
        ...

    def add(self, entry_id: str, entry: dict[str, Any]) -> None: ...


class Submitted(NamedTuple):
    """What the history entry of a run needs from its submission."""

    prompt: dict[str, Any]
    workflow: dict[str, Any] | None
    at_s: float


def history_entry(
    job_id: str, submitted: Submitted, status: dict[str, Any], number: int, ended_s: float
) -> dict[str, Any]:
    """The ended run (its last /status, with the bridge's `saved` files) as a history entry."""
    outputs: dict[str, dict[str, list[dict[str, str]]]] = {}
    for file in status.get("saved") or []:
        media = "audio" if file["filename"].lower().endswith(AUDIO_SUFFIXES) else "images"
        view = {key: file[key] for key in ("filename", "subfolder", "type")}
        outputs.setdefault(file.get("node_id") or "output", {}).setdefault(media, []).append(view)
    started_ms, ended_ms = round(submitted.at_s * 1000), round(ended_s * 1000)
    messages: list[list[Any]] = [["execution_start", {"prompt_id": job_id, "timestamp": started_ms}]]
    state = status.get("status")
    output: dict[str, Any] = status["output"] if isinstance(status.get("output"), dict) else {}
    if state == JobState.COMPLETED:
        messages.append(["execution_success", {"prompt_id": job_id, "timestamp": ended_ms}])
    elif state == JobState.CANCELLED:
        messages.append(["execution_interrupted", {"prompt_id": job_id, "timestamp": ended_ms}])
    else:
        details: dict[str, Any] = output["details"] if isinstance(output.get("details"), dict) else {}
        node_id = str(details.get("node_id") or "")
        error = {
            "prompt_id": job_id,
            "node_id": node_id,
            "node_type": str((submitted.prompt.get(node_id) or {}).get("class_type") or ""),
            "exception_type": f"RunPod {state}",
            "exception_message": str(output.get("error") or status.get("error") or state),
            "traceback": [],
            "timestamp": ended_ms,
        }
        messages.append(["execution_error", error])
    extra_data: dict[str, Any] = {"create_time": started_ms, "runpod_job_id": job_id}
    if submitted.workflow is not None:
        extra_data["extra_pnginfo"] = {"workflow": submitted.workflow}
    return {
        "prompt": (number, job_id, submitted.prompt, extra_data, list(outputs)),
        "outputs": outputs,
        "status": {
            "status_str": "success" if state == JobState.COMPLETED else "error",
            "completed": state == JobState.COMPLETED,
            "messages": messages,
        },
        "meta": {},
    }
