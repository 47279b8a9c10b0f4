"""What this ComfyUI offers, learned once per connection, and the answers built from it.

Contract: `await ComfyCapabilities.learn(comfy, settings)` reads ComfyUI's nodes
(GET /object_info), keeps a copy (`nodes_snapshot`), and checks the named workflows
(WORKFLOWS_DIR) against them. `ComfyCapabilities.remembered(comfy, settings, learn_now)`
builds the same from that copy, without asking ComfyUI (None without a usable copy):
the worker reads it while ComfyUI boots, so the first job need not wait for ComfyUI to
list its nodes (~0.1 s, and ComfyUI's event loop is busy meanwhile). Remembered
capabilities are provisional: a job refused against them is resolved again against
`learn_now()` (ComfyUI's own answer), and the answers that list or explain models
always use that answer. The worker keeps the value while its connection lives and
learns it anew once ComfyUI has been restarted. Built from it, without any job state
(so several jobs may use one value at once):

- `workflow_to_run(request)`: the API graph a job asks for (as sent, converted from
  the UI format, or a named workflow with its parameters; seeds randomized if asked),
  checked against the nodes (unknown node types, loaders reading outside ComfyUI's
  folders), with the files its parameters bring and what the result says of its origin;
- `answer_list(what)`: `{"list": "workflows"}`, `"models"`, `"nodes"` and `"openapi"`;
- `explain(rejected, workflow)`: a refused value that is not installed, explained;
- `model_inputs()`: which loader input picks from which model folder (asked once);
- `volume_pack_states()`: what became of the network volume's node packs (VOLUME_NODE_PACKS).

A library of named workflows that cannot be read is kept as its error: jobs that
send a graph still run, jobs that name a workflow get the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.contract import VolumePack
from ..core.errors import InvalidJobInput, WorkflowRejected
from ..core.settings import Settings
from ..node_packs.volume_packs import VolumePacks
from ..request import ui_format
from ..request.job_input import InputFile, JobInput
from ..request.named_workflows import WorkflowLibrary, WorkflowLibraryError
from ..request.node_catalog import NodeCatalog
from ..request.openapi import openapi_document
from ..request.workflow import Workflow
from . import nodes_snapshot
from .comfy_api import ComfyAPI
from .installed import InstalledModels, closest_names, explain_missing_models, loader_inputs, not_offered

log = logging.getLogger(__name__)

CHECKED_IN_LOOP_NODES = 200  # a larger graph's checks run in a thread


@dataclass(frozen=True)
class WorkflowToRun:
    """The graph a job runs, the input files its parameters bring, and what the result
    says of where the graph came from (`workflow_format` or `workflow_name`)."""

    workflow: Workflow
    files: list[InputFile]
    about: dict[str, Any]


@dataclass
class ComfyCapabilities:
    comfy: ComfyAPI
    nodes: NodeCatalog
    library: WorkflowLibrary | None
    library_error: str | None = None
    api_nodes: bool = False  # COMFY_API_NODES: whether ComfyUI loads the Comfy.org API nodes
    volume_packs: VolumePacks = field(default_factory=VolumePacks)  # the network volume's node packs
    learn_now: Callable[[], Awaitable[ComfyCapabilities]] | None = field(default=None, repr=False)
    """Set when built from the snapshot: ComfyUI's own answer, asked once when needed."""
    _model_folders: dict[str, str] | None = field(default=None, repr=False)

    @classmethod
    async def learn(cls, comfy: ComfyAPI, settings: Settings) -> ComfyCapabilities:
        object_info = await comfy.object_info()
        snapshot = settings.nodes_snapshot_path
        if snapshot is not None:
            await asyncio.to_thread(
                nodes_snapshot.save, snapshot, settings.comfyui_path, object_info, settings.volume_node_packs
            )
        return await asyncio.to_thread(cls.built, comfy, settings, object_info)

    @classmethod
    def remembered(
        cls, comfy: ComfyAPI, settings: Settings, learn_now: Callable[[], Awaitable[ComfyCapabilities]]
    ) -> ComfyCapabilities | None:
        """From the snapshot (blocking: run it in a thread), or None without a usable one."""
        if settings.nodes_snapshot_path is None:
            return None
        snapshot, volume_packs = settings.nodes_snapshot_path, settings.volume_node_packs
        object_info = nodes_snapshot.load(snapshot, settings.comfyui_path, volume_packs)
        if object_info is None:
            return None
        capabilities = cls.built(comfy, settings, object_info)
        capabilities.learn_now = learn_now
        return capabilities

    @classmethod
    def built(cls, comfy: ComfyAPI, settings: Settings, object_info: dict[str, Any]) -> ComfyCapabilities:
        nodes = NodeCatalog.from_object_info(object_info)
        volume_packs = VolumePacks.read(settings.volume_node_packs)
        try:
            library = WorkflowLibrary.load(settings.workflows_dir, nodes)
            log.info("named workflows: %s", ", ".join(library.workflows) or "none")
            return cls(comfy, nodes, library, api_nodes=settings.comfy_api_nodes, volume_packs=volume_packs)
        except WorkflowLibraryError as error:
            log.error("the named workflows in %s cannot be used:\n%s", settings.workflows_dir, error)
            return cls(comfy, nodes, None, str(error), api_nodes=settings.comfy_api_nodes, volume_packs=volume_packs)

    async def learned(self) -> ComfyCapabilities:
        """These capabilities if ComfyUI told them, else ComfyUI's own answer."""
        return self if self.learn_now is None else await self.learn_now()

    async def workflow_to_run(self, request: JobInput) -> WorkflowToRun:
        try:
            return await self._workflow_to_run(request)
        except InvalidJobInput:
            if self.learn_now is None:
                raise
            # The snapshot may lack what ComfyUI has now (API nodes turned on, say).
            log.info("a job was refused against the node snapshot; checking it against ComfyUI's own node list")
            return await (await self.learned())._workflow_to_run(request)

    async def _workflow_to_run(self, request: JobInput) -> WorkflowToRun:
        files: list[InputFile] = []
        if request.workflow_name is not None:
            named = self._library("input.workflow_name").get(request.workflow_name)
            workflow, files = named.apply(request.params)
            about: dict[str, Any] = {"workflow_name": named.name}
        elif request.ui_workflow is not None:
            # In a thread: a big graph takes the converter milliseconds.
            api = await asyncio.to_thread(ui_format.to_api_format, request.ui_workflow, self.nodes)
            workflow = Workflow.from_api(api)
            problems = workflow.link_problems()
            if problems:
                raise InvalidJobInput(problems)
            about = {"workflow_format": "ui"}
        elif request.replay is not None:
            workflow, about = request.replay.workflow, {"workflow_format": "api"}
        else:
            assert request.workflow is not None
            workflow, about = request.workflow, {"workflow_format": "api"}
        if request.randomize_seeds:
            workflow = workflow.with_random_seeds()
        packages = ui_format.packages_by_node((request.extra_pnginfo or {}).get("workflow"))
        # A graph of thousands of nodes takes the checks a while: off the event loop, where
        # other jobs' progress and results wait; a usual graph is checked in microseconds.
        if len(workflow) > CHECKED_IN_LOOP_NODES:
            problems = await asyncio.to_thread(self._problems, workflow, packages, request)
        else:
            problems = self._problems(workflow, packages, request)
        if problems:
            raise InvalidJobInput(problems)
        return WorkflowToRun(workflow, files, about)

    async def check(self, to_run: WorkflowToRun) -> dict[str, Any]:
        """A validate-only job's answer, without running anything: `{"valid": true, ...}`
        when the graph's nodes exist (checked by `workflow_to_run`) and every list input's
        value is offered by ComfyUI now (its own node list, so models on the network volume
        count); else `InvalidJobInput` naming each value that is not (a model not
        installed, most often) with the closest installed names."""
        catalog = (await self.learned()).nodes
        workflow = to_run.workflow
        problems = []
        for node_id, name, value in not_offered(workflow, catalog, set()):
            choices = catalog.choices(workflow.class_type(node_id) or "", name) or []
            closest = closest_names(value, [str(choice) for choice in choices])
            hint = f" (closest: {', '.join(closest)})" if closest else ""
            where = f"node {node_id} '{workflow.display_name(node_id)}' ({workflow.class_type(node_id)})"
            problem = f"{where}: '{value}' is not installed or not offered by this ComfyUI{hint}"
            problems.append((f"input.workflow.{node_id}.inputs.{name}", problem))
        if problems:
            raise InvalidJobInput(problems)
        return {"valid": True, **to_run.about, "nodes": len(workflow)}

    def _problems(self, workflow: Workflow, packages: dict[str, str], request: JobInput) -> list[tuple[str, str]]:
        """Unknown node types (with what to add), else file inputs that leave ComfyUI's folders."""
        unknown = workflow.unknown_node_types(self.nodes, packages)
        if unknown and request.comfy_org_api_key is not None and not self.api_nodes:
            hint = "; Comfy.org API nodes are not loaded on this endpoint: set COMFY_API_NODES=true to use them"
            unknown = [(path, text + hint) for path, text in unknown]
        return unknown or workflow.unsafe_file_inputs(self.nodes.file_inputs)

    async def answer_list(self, what: str) -> dict[str, Any]:
        """`workflows`: the named workflows with their parameters' JSON Schemas. `openapi`: the
        endpoint's OpenAPI document, with those workflows as job inputs. `nodes`:
        the node types ComfyUI has, which node pack brings each (`node_packs`), and what
        became of the network volume's packs (`volume_packs`).
        `models`: each model folder's files and paths, and which loader inputs choose from
        them (asked now: files on the network volume come and go)."""
        if self.learn_now is not None:
            return await (await self.learned()).answer_list(what)
        if what == "workflows":
            return {"workflows": self._library("input.list").describe()}
        if what == "openapi":
            return openapi_document(self._library("input.list").describe())
        if what == "nodes":
            packs: dict[str, list[str]] = {}
            for name in sorted(self.nodes):
                packs.setdefault(self.nodes.pack(name), []).append(name)
            return {"nodes": sorted(self.nodes), "node_packs": packs, "volume_packs": await self.volume_pack_states()}
        installed = await InstalledModels.read(self.comfy)
        return {
            "models": dict(installed.files),
            "folders": dict(installed.folders),
            "loader_inputs": loader_inputs(NodeCatalog.from_object_info(await self.comfy.object_info()), installed),
        }

    async def volume_pack_states(self) -> dict[str, VolumePack]:
        """What became of each node pack on the network volume: loaded, failed to import
        (ComfyUI's log, read only when a pack brought no node types, says why) or refused."""
        counts = Counter(self.nodes.pack(name) for name in self.nodes)
        errors: dict[str, str] | None = {}
        if self.volume_packs.without_nodes(counts):
            errors = await self.comfy.custom_node_import_errors()
        return self.volume_packs.states(counts, errors)

    async def explain(self, rejected: WorkflowRejected, workflow: Workflow) -> WorkflowRejected:
        """A refused value that is not installed, explained (see `installed.py`)."""
        if not any(error.get("type") == "value_not_in_list" for error in rejected.node_errors):
            return rejected
        if self.learn_now is not None:
            return await (await self.learned()).explain(rejected, workflow)
        installed = await InstalledModels.read(self.comfy)
        return explain_missing_models(rejected, workflow, self.nodes, installed)

    async def model_inputs(self) -> dict[str, str]:
        """`<class>.<input>` -> model folder, for every input that picks a model file."""
        if self.learn_now is not None:
            return await (await self.learned()).model_inputs()
        if self._model_folders is None:
            inputs = loader_inputs(self.nodes, await InstalledModels.read(self.comfy))
            self._model_folders = {key: entry["folder"] for key, entry in inputs.items()}
        return self._model_folders

    def _library(self, field_name: str) -> WorkflowLibrary:
        if self.library is None:
            raise InvalidJobInput(
                [(field_name, f"the worker's named workflows could not be read: {self.library_error}")]
            )
        return self.library
