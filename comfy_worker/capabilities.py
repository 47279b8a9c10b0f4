"""What this ComfyUI offers, learned once per connection, and the answers built from it.

Contract: `await ComfyCapabilities.learn(comfy, settings)` reads ComfyUI's nodes
(GET /object_info) and the named workflows checked against them (WORKFLOWS_DIR).
The worker keeps the value while its connection lives and learns it anew once
ComfyUI has been restarted. Built from it, without any job state (so several jobs
may use one value at once):

- `workflow_to_run(request)`: the API graph a job asks for (as sent, converted from
  the UI format, or a named workflow with its parameters; seeds randomized if asked),
  checked against the nodes (unknown node types, loaders reading outside ComfyUI's
  folders), with the files its parameters bring and what the result says of its origin;
- `answer_list(what)`: `{"list": "workflows"}` and `{"list": "models"}`;
- `explain(rejected, workflow)`: a refused value that is not installed, explained;
- `model_inputs()`: which loader input picks from which model folder (asked once).

A library of named workflows that cannot be read is kept as its error: jobs that
send a graph still run, jobs that name a workflow get the reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from . import ui_format
from .comfy_api import ComfyAPI
from .errors import InvalidJobInput, WorkflowRejected
from .installed import InstalledModels, explain_missing_models, loader_inputs
from .job_input import InputFile, JobInput
from .named_workflows import WorkflowLibrary, WorkflowLibraryError
from .settings import Settings
from .workflow import NodeCatalog, Workflow

log = logging.getLogger(__name__)


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
    _model_folders: dict[str, str] | None = field(default=None, repr=False)

    @classmethod
    async def learn(cls, comfy: ComfyAPI, settings: Settings) -> ComfyCapabilities:
        object_info = await comfy.object_info()
        try:
            library = await asyncio.to_thread(WorkflowLibrary.load, settings.workflows_dir, object_info)
            log.info("named workflows: %s", ", ".join(library.workflows) or "none")
            return cls(comfy, NodeCatalog.from_object_info(object_info), library)
        except WorkflowLibraryError as error:
            log.error("the named workflows in %s cannot be used:\n%s", settings.workflows_dir, error)
            return cls(comfy, NodeCatalog.from_object_info(object_info), None, str(error))

    async def workflow_to_run(self, request: JobInput) -> WorkflowToRun:
        files: list[InputFile] = []
        if request.workflow_name is not None:
            named = self._library("input.workflow_name").get(request.workflow_name)
            workflow, files = named.apply(request.params)
            about: dict[str, Any] = {"workflow_name": named.name}
        elif request.ui_workflow is not None:
            # In a thread: a big graph takes the converter milliseconds.
            api = await asyncio.to_thread(ui_format.to_api_format, request.ui_workflow, self.nodes.object_info)
            workflow = Workflow.from_api(api)
            problems = workflow.link_problems()
            if problems:
                raise InvalidJobInput(problems)
            about = {"workflow_format": "ui"}
        else:
            assert request.workflow is not None
            workflow, about = request.workflow, {"workflow_format": "api"}
        if request.randomize_seeds:
            workflow = workflow.with_random_seeds()
        problems = workflow.unknown_node_types(self.nodes.object_info) or workflow.unsafe_file_inputs(
            self.nodes.file_inputs
        )
        if problems:
            raise InvalidJobInput(problems)
        return WorkflowToRun(workflow, files, about)

    async def answer_list(self, what: str) -> dict[str, Any]:
        """`workflows`: the named workflows with their parameters' JSON Schemas. `models`:
        each model folder's files and paths, and which loader inputs choose from them
        (asked now: files on the network volume come and go)."""
        if what == "workflows":
            return {"workflows": self._library("input.list").describe()}
        installed = await InstalledModels.read(self.comfy)
        return {
            "models": dict(installed.files),
            "folders": dict(installed.folders),
            "loader_inputs": loader_inputs(await self.comfy.object_info(), installed),
        }

    async def explain(self, rejected: WorkflowRejected, workflow: Workflow) -> WorkflowRejected:
        """A refused value that is not installed, explained (see `installed.py`)."""
        if not any(error.get("type") == "value_not_in_list" for error in rejected.node_errors):
            return rejected
        installed = await InstalledModels.read(self.comfy)
        return explain_missing_models(rejected, workflow, self.nodes.object_info, installed)

    async def model_inputs(self) -> dict[str, str]:
        """`<class>.<input>` -> model folder, for every input that picks a model file."""
        if self._model_folders is None:
            inputs = loader_inputs(self.nodes.object_info, await InstalledModels.read(self.comfy))
            self._model_folders = {key: entry["folder"] for key, entry in inputs.items()}
        return self._model_folders

    def _library(self, field_name: str) -> WorkflowLibrary:
        if self.library is None:
            raise InvalidJobInput(
                [(field_name, f"the worker's named workflows could not be read: {self.library_error}")]
            )
        return self.library
