"""The worker's edge to ComfyUI: the interface every stage talks to, and its event type.

Contract: `ComfyAPI` is what the worker needs from one ComfyUI server: its HTTP API
(prompts, queue, history, node info) and its event stream. Files go through the
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
from dataclasses import dataclass
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


class EventStreamClosed(Exception):
    """The event stream closed. Whether ComfyUI died or only the socket dropped is the
    caller's call (`prompt` checks the process and reconnects)."""


class ComfyAPI(Protocol):
    async def is_responding(self) -> bool:
        """True when ComfyUI answers HTTP (polled while it starts); never raises."""
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

    async def queue_prompt(self, prompt: dict[str, Any], extra_data: dict[str, Any]) -> str:
        """POST /prompt for this client's event stream; the prompt id, or `WorkflowRejected`."""
        ...

    async def history(self, prompt_id: str) -> dict[str, Any]:
        """The prompt's history entry ({} while it has none)."""
        ...

    async def forget_history(self, prompt_id: str) -> None:
        """Drop the prompt from ComfyUI's history."""
        ...

    async def queue(self) -> dict[str, Any]:
        """{"queue_running": [...], "queue_pending": [...]}; entries are [number, prompt_id, ...]."""
        ...

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt the prompt if it is the one running (takes effect between steps)."""
        ...

    async def delete_queued(self, prompt_id: str) -> None:
        """Take a pending prompt out of the queue."""
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
