"""The worker's contract with a ComfyUI tree, checked through the worker's own code.

`await check_contract(url, comfyui, pid_file, checkpoints)` drives a running ComfyUI
(started by scripts/image/check_comfyui.py, on the CPU, with a generated checkpoint) the
way a RunPod job does: `Worker.start()` learns its nodes and keeps the node snapshot; a
small txt2img job runs with progress; its outputs come from the `executed` events; a
cancelled job's prompt stops and leaves ComfyUI idle; history entries are deleted; a
UI-format workflow converts and runs; no job leaves a file behind. Every call the worker
makes and every event it reads are recorded (`Recorded`), so a failure names what
broke: which endpoint, which event, which field. Raises `ContractBroken` with all that
is wrong, or returns a one-line summary.

It knows only the worker's public objects (`Worker`, `Settings`, `ComfyConnection`,
`ComfyClient`): whatever the worker does with a ComfyUI (old routes or newer ones) is
what is checked.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import tempfile
from collections.abc import AsyncGenerator, Awaitable
from pathlib import Path
from typing import Any

from comfy_worker.comfyui import nodes_snapshot
from comfy_worker.comfyui.comfy_api import ComfyEvent
from comfy_worker.comfyui.comfy_client import ComfyClient
from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.comfyui.connection import ComfyConnection
from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JOB_TIMEOUT_S = 300  # a job of the check; only a hang reaches it
CANCEL_BOUND_S = 60  # from the cancel to an idle ComfyUI; only a prompt that ignores it reaches it
SAVER = "9"  # the saver node of `txt2img`


class ContractBroken(Exception):
    """The worker cannot drive this ComfyUI; the message names each broken part."""


def txt2img(checkpoint: str, steps: int, seed: int = 1) -> dict[str, Any]:
    """The smallest real txt2img graph, API format, 64 px."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },  # fmt: skip
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        SAVER: {"class_type": "SaveImage", "inputs": {"filename_prefix": "contract", "images": ["8", 0]}},
    }


# Where ComfyUI's requirements put Comfy-Org's workflow templates (UI format).
TEMPLATE_PACKAGES = (
    "comfyui_workflow_templates_media_image",
    "comfyui_workflow_templates_media_other",
    "comfyui_workflow_templates_media_video",
    "comfyui_workflow_templates_media_api",
)


def workflow_template(name: str) -> dict[str, Any] | None:
    """A workflow template as the editor saves it (UI format); None where none is installed."""
    for package in TEMPLATE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / "templates" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def default_ui_workflow(checkpoint: str) -> dict[str, Any] | None:
    """Comfy-Org's default txt2img template on the generated checkpoint, 64 px, 2 steps."""
    workflow = workflow_template("default")
    for node in (workflow or {}).get("nodes", []):
        values = node.get("widgets_values")
        if node.get("type") == "CheckpointLoaderSimple":
            values[0] = checkpoint
        elif node.get("type") == "EmptyLatentImage":
            values[0:2] = [64, 64]
        elif node.get("type") == "KSampler":
            values[2] = 2  # steps
    return workflow


class Recorded:
    """A `ComfyAPI` that passes everything on and keeps the events the worker read."""

    def __init__(self, api: ComfyClient):
        self.api = api
        self.seen: list[ComfyEvent] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    async def events(self) -> AsyncGenerator[ComfyEvent, None]:
        async for event in self.api.events():
            self.seen.append(event)
            yield event

    def events_for(self, prompt_id: str) -> list[ComfyEvent]:
        return [event for event in self.seen if event.prompt_id == prompt_id]

    def prompt_ids(self) -> list[str]:
        return list(dict.fromkeys(event.prompt_id for event in self.seen if event.prompt_id))


def _files(comfyui: Path) -> set[Path]:
    return {path for folder in ("input", "output", "temp") for path in (comfyui / folder).rglob("*") if path.is_file()}


async def _bounded(what: str, awaitable: Awaitable[Any], bound_s: float) -> Any:
    try:
        return await asyncio.wait_for(awaitable, bound_s)
    except TimeoutError:
        raise ContractBroken(f"{what}: no answer within {bound_s:.0f} s") from None


async def check_contract(url: str, comfyui: Path, pid_file: Path, checkpoint: str) -> str:
    with tempfile.TemporaryDirectory(prefix="comfyui-contract-") as scratch:
        snapshot = Path(scratch) / "object-info.json"
        (Path(scratch) / "workflows").mkdir()
        settings = Settings.from_env(
            {
                "COMFY_HOST": url.removeprefix("http://"),
                "COMFYUI_PATH": str(comfyui),
                "COMFY_PID_FILE": str(pid_file),
                "NODES_SNAPSHOT": str(snapshot),
                "MODEL_CACHE_DIR": str(Path(scratch) / "model-cache"),
                "WORKFLOWS_DIR": str(Path(scratch) / "workflows"),
            }
        )
        api = Recorded(ComfyClient(settings.comfy_http_url))
        progress: list[dict[str, Any]] = []
        worker = Worker(
            settings,
            lambda job, payload: progress.append(payload),
            comfyui=ComfyConnection(settings, api=api, process=ComfyProcess(pid_file)),
        )
        files_before = _files(comfyui)
        try:
            return await _check(worker, api, progress, settings, snapshot, checkpoint, files_before)
        finally:
            await worker.close()


async def _check(
    worker: Worker,
    api: Recorded,
    progress: list[dict[str, Any]],
    settings: Settings,
    snapshot: Path,
    checkpoint: str,
    files_before: set[Path],
) -> str:
    await _bounded("the worker's start (GET /object_info)", worker.start(), JOB_TIMEOUT_S)
    capabilities = await worker.comfyui.ready()
    for node_type in ("CheckpointLoaderSimple", "KSampler", "SaveImage"):
        if node_type not in capabilities.nodes:
            raise ContractBroken(f"GET /object_info lists no {node_type} node")
    remembered = await asyncio.to_thread(nodes_snapshot.load, snapshot, settings.comfyui_path)
    if remembered != capabilities.nodes.raw:
        raise ContractBroken("the node snapshot does not give back the node list of GET /object_info")

    # A job: progress, outputs from the `executed` events, its history entry deleted.
    result = await _run(worker, "contract-txt2img", {"workflow": txt2img(checkpoint, steps=3)})
    prompt_ids = api.prompt_ids()
    events = api.events_for(prompt_ids[-1]) if prompt_ids else []
    _expect_image(result, "the txt2img job", events)
    if not any(payload.get("step") for payload in progress):
        seen = sorted({event.type for event in events})
        raise ContractBroken(
            f"the txt2img job sent no step progress: the worker reads ComfyUI's `progress` events "
            f"(fields value, max, node, prompt_id); the websocket sent {seen}"
        )
    await worker.settled()
    for prompt_id in prompt_ids:
        if await api.api.history(prompt_id):
            raise ContractBroken(f"POST /history {{'delete': [...]}} left prompt {prompt_id}'s history entry")

    # A cancel (what RunPod's /cancel does to the handler's task) frees ComfyUI.
    progress.clear()
    running = asyncio.ensure_future(
        worker.handle({"id": "contract-cancel", "input": {"workflow": txt2img(checkpoint, steps=10000, seed=2)}})
    )
    await _bounded("the long job's first step (a `progress` event)", _first_step(progress, running), JOB_TIMEOUT_S)
    running.cancel()
    try:
        await running
    except asyncio.CancelledError:
        pass
    cancelled = api.prompt_ids()[-1]
    await _bounded(f"the cancelled prompt {cancelled} ending", _ended(api, cancelled), CANCEL_BOUND_S)

    # A UI-format workflow converts (comfy-cli's converter, this ComfyUI's node list) and runs.
    ui_workflow = default_ui_workflow(checkpoint)
    converted = "no templates package to take a UI-format workflow from"
    if ui_workflow is not None:
        result = await _run(worker, "contract-ui", {"workflow": ui_workflow})
        _expect_image(result, "the UI-format default template", api.events_for(api.prompt_ids()[-1]))
        if result.get("workflow_format") != "ui":
            raise ContractBroken(f"the UI-format workflow was not converted: {result.get('workflow_format')!r}")
        converted = "a UI-format workflow converted and ran"

    await worker.settled()
    left = sorted(str(path) for path in _files(settings.comfyui_path) - files_before)
    if left:
        raise ContractBroken(f"jobs left files behind: {left[:5]}")
    node_types = len(capabilities.nodes)
    return (
        f"{(await api.offers()).describe()}: nodes learned ({node_types} types, snapshot kept), "
        f"a job ran with progress and outputs from `executed`, a cancel left ComfyUI idle, "
        f"history entries deleted, {converted}, no file left behind"
    )


async def _run(worker: Worker, job_id: str, job_input: dict[str, Any]) -> dict[str, Any]:
    job_input = {**job_input, "timeout_s": JOB_TIMEOUT_S}
    return await _bounded(f"job {job_id}", worker.handle({"id": job_id, "input": job_input}), JOB_TIMEOUT_S + 30)


def _expect_image(result: dict[str, Any], what: str, events: list[ComfyEvent]) -> None:
    if "error" in result:
        raise ContractBroken(f"{what} failed: {json.dumps(result['error'])[:2000]}")
    images = result.get("images") or []
    if not images or not base64.b64decode(images[0].get("data", "")).startswith(PNG_MAGIC):
        executed = [event for event in events if event.type == "executed"]
        if not executed:
            seen = sorted({event.type for event in events})
            raise ContractBroken(
                f"{what} returned no image: ComfyUI's websocket sent no `executed` event for its prompt "
                f"(the worker takes a job's outputs from them); it sent {seen}"
            )
        fields = sorted(executed[-1].data)
        raise ContractBroken(
            f"{what} returned no image: the `executed` events lack what the worker reads "
            f"(fields node, output.images[].filename/subfolder/type); the last one had {fields}"
        )


async def _first_step(progress: list[dict[str, Any]], running: asyncio.Future[Any]) -> None:
    while not any(payload.get("step") for payload in progress):
        if running.done():
            raise ContractBroken(f"the long job ended before its first step: {running.result()}")
        await asyncio.sleep(0.05)


async def _ended(api: Recorded, prompt_id: str) -> None:
    while (await api.api.prompt_state(prompt_id)).place in ("pending", "running"):  # noqa: ASYNC110 (ComfyUI's state)
        await asyncio.sleep(0.1)
