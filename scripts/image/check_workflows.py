"""The named workflows, checked against a ComfyUI's node list before an image ships: every
one loads (its parameter map fits its graph), its node types exist in this ComfyUI, and
every model file it names is installed. scripts/image/check_comfyui.py runs it in the
image build, against the ComfyUI it just built.

A list input that an image, video or audio parameter fills (img2img's image) is the
job's to give, so it is not checked; every other value is, parameters' defaults included.
A model that only the network volume will hold fails here on purpose: let the workflow
name a baked one and a `model` parameter pick the volume's at run time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from comfy_worker.comfyui.installed import values_not_installed
from comfy_worker.request.named_workflows import WorkflowLibrary, WorkflowLibraryError
from comfy_worker.request.node_catalog import NodeCatalog

log = logging.getLogger("check_comfyui")


def problems(workflows: Path, object_info: dict[str, Any]) -> list[str]:
    """One line per problem, each naming the workflow's file and what is wrong."""
    catalog = NodeCatalog.from_object_info(object_info)
    try:
        library = WorkflowLibrary.load(workflows, catalog)
    except WorkflowLibraryError as error:
        return str(error).splitlines()
    found = []
    for name, workflow in sorted(library.workflows.items()):
        for missing in values_not_installed(workflow.workflow, catalog, workflow.file_inputs()):
            found.append(f"{workflows / name}.json: {missing} is not installed or not offered")
    log.info("checked %d named workflows: %s", len(library.workflows), ", ".join(library.workflows) or "none")
    return found
