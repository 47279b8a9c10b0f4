"""The editor's graph as the endpoint takes it: checked before anything is sent, and the
local input files its loaders name, which travel with the job. `BridgeError` is every
refusal of the bridge: the message says what to do, `node_ids` which nodes the editor marks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

FILE_INPUTS = ("image", "video", "audio", "file")  # the loaders' file-name inputs


class BridgeError(Exception):
    """A request the bridge cannot carry out; the message says what to do, `node_ids` which
    nodes of the graph it is about (the editor marks them)."""

    def __init__(self, message: str, status: int = 400, node_ids: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.node_ids = node_ids or []


def check_graph(prompt: Any) -> None:
    """A graph the endpoint can be given: an API-format object whose every node has a type."""
    if not isinstance(prompt, dict):
        raise BridgeError("'prompt' must be the workflow in API format (an object of nodes)")
    if not prompt:
        raise BridgeError(
            "the graph has nothing to run: its nodes are all editor-only (notes, reroutes, primitives), muted or "
            "bypassed. Add an output node such as Save Image"
        )
    formless = [str(node_id) for node_id, node in prompt.items() if not has_type(node)]
    if formless:
        raise BridgeError(
            f"node {', '.join(formless)} has no API form: its type is not installed in this ComfyUI, so the editor "
            "cannot turn it into the API format. Install its node pack here (the endpoint needs it too), or remove "
            "or bypass the node",
            node_ids=formless,
        )


def has_type(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get("class_type"), str) and bool(node["class_type"])


def input_files(prompt: dict[str, Any], input_dir: Path) -> list[Path]:
    """The local input files the graph's loaders name (inside the input folder only)."""
    found = []
    for node in prompt.values():
        for name, value in (node.get("inputs") or {}).items():
            if name not in FILE_INPUTS or not isinstance(value, str):
                continue
            path = (input_dir / value.removesuffix(" [input]")).resolve()
            if path.is_relative_to(input_dir) and path.is_file() and path not in found:
                found.append(path)
    return found


def encoded_inputs(files: list[Path], input_dir: Path) -> list[dict[str, str]]:
    """The files as the job's `images` entries (base64, with their subfolder)."""
    entries = []
    for path in files:
        relative = path.parent.relative_to(input_dir).as_posix()
        encoded = base64.b64encode(path.read_bytes()).decode()
        entries.append({"name": path.name, "subfolder": "" if relative == "." else relative, "image": encoded})
    return entries


def node_of(field: str) -> str | None:
    """The node a problem's field is about (`input.workflow.<node id>.inputs...`), if any."""
    parts = field.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["input", "workflow"] else None
