"""ComfyUI's installed nodes, from GET /object_info: the one reader of its shape.

Contract: `NodeCatalog.from_object_info(raw)` wraps what ComfyUI answered (or the snapshot
kept of it) once, and every other module asks it instead of reading the raw shape: which
node types exist (`in`, iteration), a type's inputs (`inputs`, V3 dynamic combos' nested
inputs included) and a list input's choices (`choices`), which types are outputs
(`output_classes`) and which inputs take file names (`file_inputs`), which node pack a
type comes from (`pack`). `raw` stays for the two that need ComfyUI's own shape: comfy-cli's
UI-format converter and the snapshot on disk. `combo_choices` and `is_upload` read one
input's spec.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


def output_node_classes(object_info: Mapping[str, Any]) -> frozenset[str]:
    """Class names that ComfyUI treats as outputs (they write files or show results),
    from its GET /object_info."""
    return frozenset(name for name, info in object_info.items() if info.get("output_node"))


FileInputs = Mapping[str, frozenset[str]]
"""class_type -> names of its inputs that take a file name (a COMBO of files, or an upload)."""


BACKGROUND_SAVERS = {"SaveImage": "WorkerSaveImage"}
"""Savers run in place of ComfyUI's own where installed: the same files, encoded off ComfyUI's
prompt thread while the next prompt runs (comfyui_nodes/worker_save_image)."""


@dataclass(frozen=True)
class NodeCatalog:
    """ComfyUI's installed node types, as GET /object_info describes them; a collection of
    their names (`in`, iteration, `len`)."""

    raw: Mapping[str, Any]  # as read at start-up: custom nodes do not change while it runs
    output_classes: frozenset[str]
    file_inputs: FileInputs

    @classmethod
    def from_object_info(cls, object_info: Mapping[str, Any]) -> NodeCatalog:
        return cls(object_info, output_node_classes(object_info), file_name_inputs(object_info))

    def __contains__(self, class_type: object) -> bool:
        return class_type in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def inputs(self, class_type: str) -> dict[str, Any]:
        """A node type's inputs (see `input_specs`); none for a type ComfyUI does not have."""
        return input_specs(self.raw, class_type)

    def choices(self, class_type: str, input_name: str) -> list[Any] | None:
        """A list input's choices as ComfyUI offers them now; None if it is not a list input."""
        return combo_choices(self.inputs(class_type).get(input_name))

    def pack(self, class_type: str) -> str:
        """The node pack a type comes from (see `node_pack`)."""
        return node_pack(self.raw.get(class_type) or {})

    @property
    def background_savers(self) -> dict[str, str]:
        """The BACKGROUND_SAVERS this ComfyUI has."""
        return {saver: background for saver, background in BACKGROUND_SAVERS.items() if background in self.raw}


def file_name_inputs(object_info: Mapping[str, Any]) -> FileInputs:
    found: dict[str, frozenset[str]] = {}
    for class_type in object_info:
        names = {
            name
            for name, spec in input_specs(object_info, class_type).items()
            if combo_choices(spec) is not None or is_upload(spec)
        }
        if names:
            found[class_type] = frozenset(names)
    return found


DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
"""A V3 input whose chosen option brings inputs of its own, which API-format workflows name
`<combo>.<input>` (ComfyUI's comfy_api/latest/_io.py)."""


def input_specs(object_info: Mapping[str, Any], class_type: str) -> dict[str, Any]:
    """A node class's inputs, required and optional together: name -> /object_info spec.
    The inputs of a V3 dynamic combo's options are there too, as `<combo>.<input>`; hidden
    inputs (`prompt`, `unique_id`...) are ComfyUI's to fill, so they are not."""
    inputs = (object_info.get(class_type) or {}).get("input") or {}
    specs = {**(inputs.get("required") or {}), **(inputs.get("optional") or {})}
    for name, spec in list(specs.items()):
        specs.update(_dynamic_combo_inputs(name, spec))
    return specs


def _dynamic_combo_inputs(name: str, spec: Any) -> dict[str, Any]:
    if not (isinstance(spec, list | tuple) and spec and spec[0] == DYNAMIC_COMBO):
        return {}
    nested: dict[str, Any] = {}
    for option in _spec_options(spec).get("options") or []:
        inputs = option.get("inputs") or {} if isinstance(option, dict) else {}
        for child, child_spec in {**(inputs.get("required") or {}), **(inputs.get("optional") or {})}.items():
            nested.setdefault(f"{name}.{child}", child_spec)
            for deeper, deeper_spec in _dynamic_combo_inputs(f"{name}.{child}", child_spec).items():
                nested.setdefault(deeper, deeper_spec)
    return nested


def combo_choices(spec: Any) -> list[Any] | None:
    """A list input's choices (old `[[...]]` or new `["COMBO", {"options"}]` form, or a V3
    dynamic combo's option keys); None otherwise."""
    if not isinstance(spec, list | tuple) or not spec:
        return None
    if isinstance(spec[0], list):
        return list(spec[0])
    if spec[0] == "COMBO":
        return list(_spec_options(spec).get("options") or [])
    if spec[0] == DYNAMIC_COMBO:
        return [option.get("key") for option in _spec_options(spec).get("options") or [] if isinstance(option, dict)]
    return None


def node_pack(info: Mapping[str, Any]) -> str:
    """Where a node class comes from, by its /object_info `python_module`: "core" (ComfyUI's
    own nodes and extras), "api_nodes" (Comfy.org's API nodes) or the custom node's folder."""
    module = str(info.get("python_module") or "nodes")
    if module.startswith("custom_nodes."):
        return module.split(".", 2)[1]
    return "api_nodes" if module.startswith("comfy_api_nodes") else "core"


def is_upload(spec: Any) -> bool:
    """An input whose file the user uploads (LoadImage's image, video and audio loaders)."""
    options = _spec_options(spec)
    return any(options.get(key) for key in ("image_upload", "video_upload", "audio_upload", "upload"))


def _spec_options(spec: Any) -> dict[str, Any]:
    is_spec = isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], dict)
    return spec[1] if is_spec else {}
