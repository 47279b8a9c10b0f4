"""The worker's edge to ComfyUI: the interface every stage talks to, and its event type.

Contract: `ComfyAPI` is what the worker needs from one ComfyUI server: its HTTP API
(prompts, their state and cancel, history, node info) and its event stream. Which of
ComfyUI's routes serve it is the implementation's business: `ComfyClient` reads what the
ComfyUI answering offers (`offers()`: its version, the jobs API, the atomic cancel) and
uses the newer routes where they exist, the old ones otherwise. Files go through the
shared folders, not this interface (`input_files`, `history`). `ComfyClient`
(comfy_client.py) implements it over aiohttp; `tests/support/fake_comfy.py` is a
scripted fake for unit tests. Implementations raise only `WorkerError`s
(`ComfyUnavailable`, `ComfyError`, `WorkflowRejected`) and, from `events()`,
`EventStreamClosed`.
The one event stream (this worker's client id) carries the events of every prompt
the worker queued; `comfy_events.EventRouter` is its only reader and routes them by
prompt id.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ComfyEvent:
    """One websocket message: JSON events carry `type` and `data`; binary preview
    frames arrive as type "preview_frame" with the raw bytes in `binary`."""

    type: str
    data: dict[str, Any]
    binary: bytes | None = None

    @property
    def prompt_id(self) -> str | None:
        return self.data.get("prompt_id")


@dataclass(frozen=True)
class PromptState:
    """Where a prompt is: "pending" (queued), "running", "finished" (with its history
    entry's `status`: `status_str`, `completed`, `messages`) or "unknown" (ComfyUI has
    no trace of it: never queued, dropped from the queue, or its history deleted)."""

    place: str
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComfyOffers:
    """What the ComfyUI answering offers beyond what every supported version has."""

    version: str  # "0.3.75"; "unknown" where /system_stats does not say
    jobs_api: bool = False  # GET /api/jobs/{id}: a prompt's state in one read
    atomic_cancel: bool = False  # POST /api/jobs/{id}/cancel: dequeue or interrupt, only that prompt

    def describe(self) -> str:
        newer = [
            name for name, offered in (("jobs API", self.jobs_api), ("atomic cancel", self.atomic_cancel)) if offered
        ]
        return f"ComfyUI {self.version}" + (f" (uses its {', '.join(newer)})" if newer else "")


class EventStreamClosed(Exception):
    """The event stream closed. Whether ComfyUI died or only the socket dropped is the
    caller's call (`prompt` checks the process and reconnects)."""


class ComfyAPI(Protocol):
    async def is_responding(self) -> bool:
        """True when ComfyUI answers HTTP (polled while it starts); never raises."""
        ...

    async def offers(self) -> ComfyOffers:
        """What this ComfyUI offers (asked once, then remembered)."""
        ...

    async def object_info(self) -> dict[str, Any]:
        """GET /object_info: every node class with its inputs and `output_node` flag."""
        ...

    async def model_folders(self) -> dict[str, list[str]]:
        """GET /internal/folder_paths: each model folder type and the paths searched for it
        (the image's folders and the network volume's, from extra_model_paths.yaml)."""
        ...

    async def model_files(self, folder: str) -> list[str]:
        """GET /models/<folder>: the file names ComfyUI finds for that folder type now."""
        ...

    async def custom_node_import_errors(self) -> dict[str, str] | None:
        """Custom node folder -> why ComfyUI did not load it, from its recent log (GET
        /internal/logs/raw: "Cannot import <path> module for custom nodes: <error>"); None
        when the log cannot be read (an older or newer ComfyUI without that route)."""
        ...

    async def queue_prompt(self, prompt: dict[str, Any], extra_data: dict[str, Any]) -> str:
        """POST /prompt for this client's event stream, under a prompt id of the client's
        (a lowercase UUID, as newer ComfyUIs require); the prompt id, or `WorkflowRejected`."""
        ...

    async def prompt_state(self, prompt_id: str) -> PromptState:
        """Where the prompt is now (GET /api/jobs/{id}; else GET /history/{id} and /queue)."""
        ...

    async def cancel(self, prompt_id: str) -> bool:
        """Take the prompt out of the queue if it waits there, interrupt it if it is the
        one running; no other prompt is touched. False when it was neither (finished or
        unknown). POST /api/jobs/{id}/cancel; else POST /queue {delete} or /interrupt."""
        ...

    async def history(self, prompt_id: str) -> dict[str, Any]:
        """The prompt's history entry ({} while it has none)."""
        ...

    async def forget_history(self, prompt_id: str) -> None:
        """Drop the prompt from ComfyUI's history."""
        ...

    async def connect_events(self) -> None:
        """Open the event stream unless it is open. ComfyUI sends a prompt's events only
        to the stream open at submit time, so call this before `queue_prompt`."""
        ...

    async def reconnect_events(self) -> None:
        """Close the event stream and open a new one (under a new client id)."""
        ...

    def events(self) -> AsyncGenerator[ComfyEvent, None]:
        """Events until the stream closes; then raises `EventStreamClosed`."""
        ...

    async def close(self) -> None:
        """Close connections; the client may be used again later (it reconnects)."""
        ...
