"""What ComfyUI has installed: model folders, the files in them, and which node inputs pick from them.

Contract: `InstalledModels.read(comfy)` asks the running ComfyUI (GET
/internal/folder_paths and /models/<folder>), so files on the network volume count
as they appear. `loader_inputs(catalog, installed)` maps every list input that
chooses a model file (any node, custom loaders included) to its folder and choices,
for `{"list": "models"}`. `explain_missing_models(rejected, workflow, installed)`
rewrites a refusal whose value is not in its list into one that names the node, the
input, the value, the closest installed names and the folders searched, keeping
ComfyUI's own node errors in `details`.

Which folder an input picks from is not in /object_info: an input whose choices are
exactly one folder's files belongs to that folder; an input with no choices yet (an
empty folder) is matched by its name (`lora_name` -> loras, ...).
"""

from __future__ import annotations

import asyncio
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.errors import WorkflowRejected
from ..core.sources import is_reference
from ..request.node_catalog import NodeCatalog, combo_choices, is_upload
from ..request.workflow import Workflow
from .comfy_api import ComfyAPI

# Input names of the core loaders -> folder type, for inputs whose folder is empty.
INPUT_FOLDERS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "control_net_name": "controlnet",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "model_name": "upscale_models",
    "name": "model_patches",
    "audio_encoder_name": "audio_encoders",
}
_NUMBERED = re.compile(r"\d+$")  # clip_name1, clip_name2, ...
NOT_FILES = frozenset({"custom_nodes", "configs"})
CLOSEST = 3
LIST_INSTALLED_UP_TO = 10  # a refused value with no close match lists what is installed when at most this many


@dataclass(frozen=True)
class InstalledModels:
    folders: Mapping[str, list[str]]  # folder type -> paths searched
    files: Mapping[str, list[str]]  # folder type -> file names found

    @classmethod
    async def read(cls, comfy: ComfyAPI) -> InstalledModels:
        folders = {name: paths for name, paths in (await comfy.model_folders()).items() if name not in NOT_FILES}
        names = list(folders)
        listings = await asyncio.gather(*(comfy.model_files(name) for name in names))
        return cls(folders, dict(zip(names, listings, strict=True)))

    def folder_of(self, input_name: str, choices: list[Any]) -> str | None:
        """The folder type an input picks from, or None if it is not a model input."""
        named = INPUT_FOLDERS.get(_NUMBERED.sub("", input_name))
        if choices:
            wanted = set(choices)
            if named is not None and named in self.files and wanted == set(self.files[named]):
                return named
            return next((folder for folder, files in self.files.items() if files and set(files) == wanted), None)
        return named if named in self.folders else None


def loader_inputs(catalog: NodeCatalog, installed: InstalledModels) -> dict[str, dict[str, Any]]:
    """{"<class>.<input>": {"folder", "choices"}} for every list input that picks a model file."""
    found = {}
    for class_type in sorted(catalog):
        for name, spec in catalog.inputs(class_type).items():
            choices = combo_choices(spec)
            if choices is None or any(not isinstance(choice, str) for choice in choices):
                continue
            folder = installed.folder_of(name, choices)
            if folder is not None:
                found[f"{class_type}.{name}"] = {"folder": folder, "choices": choices}
    return found


def explain_missing_models(
    rejected: WorkflowRejected, workflow: Workflow, catalog: NodeCatalog, installed: InstalledModels
) -> WorkflowRejected:
    """The same refusal, each node named by its title too, and each value that is not in
    its list explained: what is installed that comes close, and where ComfyUI looked."""
    node_errors = []
    for error in rejected.node_errors:
        error = {**error, "title": workflow.title(error.get("node_id"))}
        value = error.get("received_value")
        if error.get("type") == "value_not_in_list" and isinstance(value, str) and error.get("input"):
            offered = catalog.choices(error.get("class_type") or "", error["input"])
            listed = [choice for choice in offered or [] if isinstance(choice, str)]
            folder = installed.folder_of(error["input"], listed)
            choices = installed.files.get(folder, []) if folder else listed
            error["missing"] = {
                "value": value,
                "folder": folder,
                "closest": closest_names(value, choices),
                "searched": list(installed.folders.get(folder or "", [])),
            }
            if len(choices) <= LIST_INSTALLED_UP_TO:  # few enough to name them all
                error["missing"]["installed"] = list(choices)
        node_errors.append(error)
    return WorkflowRejected.from_comfy(rejected.details.get("comfy_error") or {}, node_errors)


def closest_names(value: str, choices: list[str]) -> list[str]:
    """Installed names like the one asked for, best first, compared without folders,
    case or extension (a typo, another precision, another folder)."""

    def key(name: str) -> str:
        return re.sub(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$", "", name.rsplit("/", 1)[-1].lower())

    keyed = {key(choice): choice for choice in choices}
    return [keyed[k] for k in difflib.get_close_matches(key(value), list(keyed), n=CLOSEST, cutoff=0.4)]


def values_not_installed(workflow: Workflow, catalog: NodeCatalog, skip: set[tuple[str, str]]) -> list[str]:
    """Each list input whose value ComfyUI does not offer (a model file that is not
    installed, most often), as "node <id> '<title>' (<class>) input '<name>': '<value>'".
    Upload inputs (LoadImage's file), models named by URL or hf:// (fetched for the job)
    and the (node, input) pairs in `skip` (a job's parameters fill them) are left out."""
    return [
        f"node {node_id} '{workflow.display_name(node_id)}' ({workflow.class_type(node_id)}) input '{name}': '{value}'"
        for node_id, name, value in not_offered(workflow, catalog, skip)
    ]


def not_offered(workflow: Workflow, catalog: NodeCatalog, skip: set[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(node id, input, value) of each list input whose value ComfyUI does not offer (see
    `values_not_installed`)."""
    found = []
    for node_id in workflow:
        class_type = workflow.class_type(node_id) or ""
        for name, spec in catalog.inputs(class_type).items():
            value = workflow.input_value(node_id, name)
            choices = combo_choices(spec)
            if choices is None or not isinstance(value, str) or (node_id, name) in skip or value in choices:
                continue
            if is_upload(spec) or is_reference(value):
                continue
            found.append((node_id, name, value))
    return found
