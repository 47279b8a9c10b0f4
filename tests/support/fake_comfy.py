"""A scripted, in-memory ComfyUI (`ComfyAPI`) for unit tests: jobs in milliseconds.

What a prompt does is a `Run`: the events ComfyUI would send, the files its output
nodes write, and how it ends. The default run (`Run.success`) executes every node,
writes one PNG per output node into the output folder, and succeeds. A run may
instead drop the event stream part-way (`drop_after`), hang until interrupted
(`hang`), or fail in a node (`Run.failure`); the history then tells the outcome,
as ComfyUI's does. `cancel` takes a pending prompt out of the queue or interrupts the
running one (unless `ignores_interrupts`), and `cancelled` lists each (prompt id, where
it was). As ComfyUI, it sends a prompt's events only to the stream it was queued under.
`fail_on` makes any method raise, to test what happens when ComfyUI misbehaves at that
point; `on_drop` runs when the stream drops.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from comfy_worker.comfyui.comfy_api import ComfyAPI, ComfyEvent, ComfyOffers, EventStreamClosed, PromptState
from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.comfyui.connection import ComfyConnection
from comfy_worker.core.job import OutputStore
from comfy_worker.core.settings import Settings
from comfy_worker.progress.progress import ProgressSink
from comfy_worker.transfer.delivery import Delivery
from comfy_worker.worker import Worker

OBJECT_INFO = {
    "SaveImage": {"output_node": True},
    "PreviewImage": {"output_node": True},
    "EmptyImage": {"output_node": False},
    "KSampler": {"output_node": False},
    "CheckpointLoaderSimple": {"output_node": False},
    "LoadImage": {"output_node": False},
}


def png_bytes(color: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Run:
    """How one prompt behaves."""

    outcome: str = "success"  # "success" or "error"
    error: dict[str, Any] = field(default_factory=dict)  # execution_error data when outcome is "error"
    drop_after: int | None = None  # close the event stream after this many events
    hang: bool = False  # stay running (after the first node) until interrupted
    subfolder: str = ""  # where output files are reported (and written, if inside the folder)
    steps: int = 2
    node_s: float = 0.0  # how long each node takes

    @classmethod
    def success(cls, **kwargs: Any) -> Run:
        return cls(**kwargs)

    @classmethod
    def failure(cls, node_id: str, node_type: str, message: str, **kwargs: Any) -> Run:
        error = {
            "node_id": node_id,
            "node_type": node_type,
            "exception_type": "RuntimeError",
            "exception_message": message,
            "traceback": ["Traceback (most recent call last):", f"RuntimeError: {message}"],
        }
        return cls(outcome="error", error=error, **kwargs)


class FakeComfy:
    def __init__(self, comfyui_path: Path, object_info: dict[str, Any] | None = None):
        self.output_dir = comfyui_path / "output"
        self.input_dir = comfyui_path / "input"
        self.client_id = "fake-client"
        self.object_info_data = object_info or OBJECT_INFO
        self.model_files_data: dict[str, list[str]] = {"checkpoints": ["sd15.safetensors"], "loras": []}
        self.import_errors: dict[str, str] | None = {}  # custom node folder -> error; None: no log route
        self.runs: list[Run] = []  # consumed one per queued prompt; default Run.success()
        self.prompts: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, dict[str, Any]] = {}
        self.running: str | None = None
        self.pending: list[str] = []
        self.calls: list[str] = []
        self.cancelled: list[tuple[str, str]] = []  # (prompt id, "pending" or "running")
        self.ignores_interrupts = False  # a node that never checks for interrupts
        self._streams = 0  # as ComfyUI, which sends a prompt's events to the stream it was queued under
        self._stream_of: dict[str, int] = {}
        self.fail_on: dict[str, BaseException] = {}
        self.responding = True
        self.on_drop: Callable[[], None] = lambda: None  # e.g. make the process look dead
        self._ids = itertools.count(1)
        self._stream: asyncio.Queue[ComfyEvent | None] | None = None
        self._sent = 0
        self._interrupted = asyncio.Event()
        self._one_at_a_time = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- ComfyAPI ----------------------------------------------------------------

    async def is_responding(self) -> bool:
        return self.responding

    async def offers(self) -> ComfyOffers:
        self._record("offers")
        return ComfyOffers("fake")

    async def object_info(self) -> dict[str, Any]:
        self._record("object_info")
        return self.object_info_data

    async def model_folders(self) -> dict[str, list[str]]:
        self._record("model_folders")
        return {folder: [f"/models/{folder}"] for folder in self.model_files_data}

    async def model_files(self, folder: str) -> list[str]:
        self._record("model_files")
        return self.model_files_data.get(folder, [])

    async def custom_node_import_errors(self) -> dict[str, str] | None:
        self._record("custom_node_import_errors")
        return self.import_errors

    async def queue_prompt(self, prompt: dict[str, Any], extra_data: dict[str, Any]) -> str:
        self._record("queue_prompt")
        prompt_id = f"prompt-{next(self._ids)}"
        self.prompts[prompt_id] = prompt
        self._stream_of[prompt_id] = self._streams
        run = self.runs.pop(0) if self.runs else Run.success()
        self.pending.append(prompt_id)
        task = asyncio.get_running_loop().create_task(self._run_in_turn(prompt_id, prompt, run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return prompt_id

    async def history(self, prompt_id: str) -> dict[str, Any]:
        self._record("history")
        return self.histories.get(prompt_id, {})

    async def forget_history(self, prompt_id: str) -> None:
        self._record("forget_history")
        self.histories.pop(prompt_id, None)

    async def prompt_state(self, prompt_id: str) -> PromptState:
        self._record("prompt_state")
        if prompt_id in self.histories:
            return PromptState("finished", self.histories[prompt_id]["status"])
        if prompt_id == self.running:
            return PromptState("running")
        return PromptState("pending") if prompt_id in self.pending else PromptState("unknown")

    async def cancel(self, prompt_id: str) -> bool:
        self._record("cancel")
        if prompt_id in self.pending:
            self.pending.remove(prompt_id)
            self.cancelled.append((prompt_id, "pending"))
            return True
        if prompt_id == self.running:
            if not self.ignores_interrupts:
                self._interrupted.set()
            self.cancelled.append((prompt_id, "running"))
            return True
        return False

    async def connect_events(self) -> None:
        self._record("connect_events")
        if self._stream is None:
            self._stream = asyncio.Queue()

    async def reconnect_events(self) -> None:
        self._record("reconnect_events")
        self._streams += 1  # a new client id: the events of prompts queued before go nowhere
        self._stream = asyncio.Queue()

    async def events(self) -> AsyncGenerator[ComfyEvent, None]:
        await self.connect_events()
        stream = self._stream
        assert stream is not None
        while True:
            event = await stream.get()
            if event is None:
                self._stream = None
                self.on_drop()
                raise EventStreamClosed("the fake dropped its event stream")
            yield event

    async def close(self) -> None:
        self._record("close")
        self._stream = None

    def restart(self) -> None:
        """As a killed and restarted ComfyUI: every prompt, queued or running, and the
        history are gone (the worker's connection was closed before the kill)."""
        for task in self._tasks:
            task.cancel()
        self.pending.clear()
        self.running = None
        self.histories.clear()
        self._one_at_a_time = asyncio.Lock()

    # -- the scripted run ---------------------------------------------------------

    def _record(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail_on:
            raise self.fail_on[name]

    async def _send(self, run: Run, event_type: str, data: dict[str, Any]) -> None:
        if run.drop_after is not None and self._sent == run.drop_after:
            await self._push(None)  # the stream drops; later events are lost
        self._sent += 1
        if self._stream_of.get(data.get("prompt_id", ""), self._streams) == self._streams:
            await self._push(ComfyEvent(event_type, data))

    async def _push(self, event: ComfyEvent | None) -> None:
        if self._stream is not None:
            await self._stream.put(event)
        await asyncio.sleep(0)

    async def _run_in_turn(self, prompt_id: str, prompt: dict[str, Any], run: Run) -> None:
        async with self._one_at_a_time:  # as ComfyUI: one prompt at a time, in the order queued
            if prompt_id not in self.pending:
                return  # taken out of the queue
            self.pending.remove(prompt_id)
            self.running = prompt_id
            await self._execute(prompt_id, prompt, run)

    async def _execute(self, prompt_id: str, prompt: dict[str, Any], run: Run) -> None:
        self._sent = 0
        self._interrupted.clear()
        outputs: dict[str, Any] = {}
        messages: list[list[Any]] = []
        await self._send(run, "execution_start", {"prompt_id": prompt_id})
        for node_id, node in prompt.items():
            await self._send(run, "executing", {"node": node_id, "prompt_id": prompt_id})
            await asyncio.sleep(run.node_s)
            if run.hang:
                await self._interrupted.wait()
                data = {"prompt_id": prompt_id, "node_id": node_id, "node_type": node["class_type"]}
                messages.append(["execution_interrupted", data])
                await self._finish(run, prompt_id, prompt, outputs, messages, "error", "execution_interrupted", data)
                return
            if run.outcome == "error" and node_id == run.error["node_id"]:
                data = {"prompt_id": prompt_id, **run.error}
                messages.append(["execution_error", data])
                await self._finish(run, prompt_id, prompt, outputs, messages, "error", "execution_error", data)
                return
            for step in range(1, run.steps + 1):
                await self._send(
                    run, "progress", {"value": step, "max": run.steps, "node": node_id, "prompt_id": prompt_id}
                )
            if self.object_info_data.get(node["class_type"], {}).get("output_node"):
                outputs[node_id] = {"images": [self._write_output(run, node_id)]}
                await self._send(run, "executed", {"node": node_id, "output": outputs[node_id], "prompt_id": prompt_id})
        messages.append(["execution_success", {"prompt_id": prompt_id}])
        await self._finish(run, prompt_id, prompt, outputs, messages, "success", "execution_success", {})

    async def _finish(
        self,
        run: Run,
        prompt_id: str,
        prompt: dict[str, Any],
        outputs: dict[str, Any],
        messages: list[list[Any]],
        status: str,
        event_type: str,
        data: dict[str, Any],
    ) -> None:
        # As ComfyUI does: history and queue first, then the events that end the prompt.
        self.histories[prompt_id] = {
            "prompt": [0, prompt_id, prompt, {}, []],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
        }
        self.running = None
        await self._send(run, event_type, {"prompt_id": prompt_id, **data})
        await self._send(run, "executing", {"node": None, "prompt_id": prompt_id})

    def _write_output(self, run: Run, node_id: str) -> dict[str, str]:
        filename = f"fake_{node_id}_{len(self.histories) + 1:05}_.png"
        target = (self.output_dir / run.subfolder / filename).resolve()
        if target.is_relative_to(self.output_dir.resolve()):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png_bytes())
        return {"filename": filename, "subfolder": run.subfolder, "type": "output"}


def fake_worker(
    settings: Settings,
    comfy: ComfyAPI,
    progress: ProgressSink | None = None,
    store: OutputStore | None = None,
    process: ComfyProcess | None = None,
) -> Worker:
    """A worker on a scripted ComfyUI (and, if given, an in-memory store; else no bucket)."""
    comfyui = ComfyConnection(settings, comfy, process)
    delivery = Delivery(store, settings.max_response_bytes)
    return Worker(settings, progress or (lambda job, payload: None), comfyui=comfyui, delivery=delivery)


def _matches_the_protocol(fake: FakeComfy) -> ComfyAPI:
    """mypy checks this (pyproject.toml): the fake still has every ComfyAPI method, with its types."""
    return fake
