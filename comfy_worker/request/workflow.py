"""The workflow as a value: an API-format ComfyUI graph, and what the worker asks of it.

Contract: a `Workflow` is built by `parse_job_input` (pydantic validates each node
as a `WorkflowNode`, then wraps the graph) and never changes afterwards:
`tagged` returns a new one. It answers the questions other stages have about the
graph: node ids, each node's class and title, which nodes are outputs, and the
prompt to POST (`to_prompt`). No other module reads a node's raw shape.

`link_problems` finds links to missing nodes and cycles (ComfyUI's own messages
for these name no node); `unsafe_file_inputs` finds file-name inputs (COMBO and
upload inputs, from /object_info) that point outside ComfyUI's folders: ComfyUI
itself lets LoadImage read an absolute path or `../`.

Why output nodes are tagged: ComfyUI caches node results, and on a cache hit it
re-reports the files an output node wrote for an earlier prompt without writing
them again. The worker deletes each job's files after the job, so a repeated
workflow would come back empty. `tagged` adds an input ComfyUI does not pass to
the node (`execution.get_input_data` skips unknown names) but does hash into the
cache key, so output nodes run again per job while everything upstream (model
loading, sampling) stays cached.
"""

from __future__ import annotations

import difflib
import posixpath
import secrets
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, TypeAdapter
from pydantic_core import core_schema

JOB_TAG_INPUT = "_runpod_job_id"
SEED_INPUTS = frozenset({"seed", "noise_seed"})


class WorkflowNode(BaseModel):
    """One node of an API-format workflow, as the job sends it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    class_type: str = Field(min_length=1)
    inputs: dict[str, Any]


def _escapes(value: str) -> bool:
    path = value.removesuffix(" [input]").removesuffix(" [output]").removesuffix(" [temp]")
    parts = path.replace("\\", "/").split("/")
    return path.startswith(("/", "\\", "~")) or ".." in parts or "\0" in path or (len(path) > 1 and path[1] == ":")


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


class Workflow:
    """An API-format graph: node id -> {"class_type", "inputs", "_meta"?, ...}. Read-only."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Mapping[str, Mapping[str, Any]]):
        self._nodes: dict[str, Mapping[str, Any]] = dict(nodes)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # Validate as {node id: WorkflowNode} (errors keep their paths, e.g.
        # input.workflow.3.class_type), then keep the nodes as plain JSON.
        def build(nodes: dict[str, WorkflowNode]) -> Workflow:
            if not nodes:
                raise ValueError("has no nodes")
            return cls({node_id: node.model_dump() for node_id, node in nodes.items()})

        return core_schema.no_info_after_validator_function(build, handler.generate_schema(dict[str, WorkflowNode]))

    @classmethod
    def from_api(cls, nodes: Any) -> Workflow:
        """Validate an API-format graph (raises pydantic's ValidationError, a ValueError)."""
        return TypeAdapter(cls).validate_python(nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workflow) and other._nodes == self._nodes

    __hash__ = None  # type: ignore[assignment]  # mutable-looking contents: compare, don't hash

    def __repr__(self) -> str:
        return f"Workflow({len(self)} nodes)"

    def class_type(self, node_id: str | None) -> str | None:
        node = self._nodes.get(node_id or "")
        return node.get("class_type") if node else None

    def title(self, node_id: str | None) -> str | None:
        """The node's title in the editor (`_meta.title`), if the export kept it."""
        node = self._nodes.get(node_id or "")
        meta = node.get("_meta") if node else None
        return meta.get("title") if isinstance(meta, Mapping) else None

    def display_name(self, node_id: str) -> str:
        """What to call the node in messages: its title, else its class, else its id."""
        return self.title(node_id) or self.class_type(node_id) or f"node {node_id}"

    def inputs(self, node_id: str) -> Mapping[str, Any]:
        node = self._nodes.get(node_id)
        return node["inputs"] if node else {}

    def input_value(self, node_id: str, name: str) -> Any:
        node = self._nodes.get(node_id)
        return node["inputs"].get(name) if node else None

    def with_inputs(self, values: Mapping[tuple[str, str], Any]) -> Workflow:
        """A copy with each (node id, input name) set to its value."""
        nodes = dict(self._nodes)
        for (node_id, name), value in values.items():
            node = nodes[node_id]
            nodes[node_id] = {**node, "inputs": {**node["inputs"], name: value}}
        return Workflow(nodes)

    def _seed_inputs(self) -> dict[tuple[str, str], int]:
        return {
            (node_id, name): value
            for node_id, node in self._nodes.items()
            for name, value in node["inputs"].items()
            if name in SEED_INPUTS and isinstance(value, int) and not isinstance(value, bool)
        }

    def seeds(self) -> dict[str, int]:
        """{"<node id>.<input>": value} for every seed input set to a number (not wired)."""
        return {f"{node_id}.{name}": value for (node_id, name), value in self._seed_inputs().items()}

    def with_random_seeds(self) -> Workflow:
        """A copy whose seed inputs (see `seeds`) hold new random values, each below 2**53
        so that JavaScript clients read them back exactly."""
        return self.with_inputs({key: secrets.randbelow(2**53) for key in self._seed_inputs()})

    def output_nodes(self, output_classes: frozenset[str]) -> list[str]:
        return [node_id for node_id, node in self._nodes.items() if node.get("class_type") in output_classes]

    def tagged(self, job_id: str, output_classes: frozenset[str]) -> Workflow:
        """A copy whose output nodes carry the job id (see the module docstring)."""
        nodes = dict(self._nodes)
        for node_id in self.output_nodes(output_classes):
            node = nodes[node_id]
            nodes[node_id] = {**node, "inputs": {**node["inputs"], JOB_TAG_INPUT: job_id}}
        return Workflow(nodes)

    def output_subfolders(self) -> set[str]:
        """The folders that savers' `filename_prefix` inputs put files in ("sub/dir" for
        "sub/dir/img"), relative to ComfyUI's output folder, as ComfyUI derives them
        (folder_paths.get_save_image_path). Prefixes with %...% patterns are left out:
        ComfyUI fills them in only when it saves."""
        folders = set()
        for node in self._nodes.values():
            prefix = node["inputs"].get("filename_prefix")
            if isinstance(prefix, str) and "%" not in prefix:
                folder = posixpath.dirname(posixpath.normpath(prefix))
                if folder and not _escapes(folder):
                    folders.add(folder)
        return folders

    def link_problems(self) -> list[tuple[str, str]]:
        """(field path, problem) for each link to a missing node and each cycle."""
        problems = []
        for node_id, node in self._nodes.items():
            for name, value in node["inputs"].items():
                if is_link(value) and value[0] not in self._nodes:
                    problems.append(
                        (
                            f"input.workflow.{node_id}.inputs.{name}",
                            f"links to node {value[0]}, which is not in the workflow",
                        )
                    )
        cycle = self._find_cycle()
        if cycle:
            names = " -> ".join(f"{node_id} ({self.display_name(node_id)})" for node_id in cycle)
            problems.append(("input.workflow", f"has a cycle: {names}"))
        return problems

    def _find_cycle(self) -> list[str]:
        upstream = {
            node_id: [value[0] for value in node["inputs"].values() if is_link(value) and value[0] in self._nodes]
            for node_id, node in self._nodes.items()
        }
        on_path, done = 1, 2
        state = dict.fromkeys(upstream, 0)
        for start in upstream:
            if state[start]:
                continue
            state[start] = on_path
            path, children = [start], [iter(upstream[start])]
            while children:
                child = next(children[-1], None)
                if child is None:
                    state[path.pop()] = done
                    children.pop()
                elif state[child] == on_path:
                    return path[path.index(child) :] + [child]
                elif not state[child]:
                    state[child] = on_path
                    path.append(child)
                    children.append(iter(upstream[child]))
        return []

    def unknown_node_types(
        self, known: Collection[str], packages: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """(field path, problem) for each node whose class_type is not in `known` (this
        ComfyUI's nodes): its id, title, the closest known types (for the first
        SUGGESTED_TYPES unknown types: each search reads every known type), and what to do:
        install the package `packages` names for it (`ui_format.packages_by_node`), if any."""
        problems = []
        suggestions: dict[str, list[str]] = {}
        known_names: list[str] | None = None
        for node_id, node in self._nodes.items():
            class_type = node.get("class_type", "")
            if class_type in known:
                continue
            title = self.title(node_id)
            text = f"node {node_id}" + (f" '{title}'" if title and title != class_type else "")
            text += f" has type '{class_type}', which this ComfyUI does not have"
            if class_type not in suggestions and len(suggestions) < SUGGESTED_TYPES:
                known_names = known_names if known_names is not None else list(known)
                suggestions[class_type] = difflib.get_close_matches(class_type, known_names, n=3, cutoff=0.75)
            close = suggestions.get(class_type)
            if close:
                text += f" (did you mean {' or '.join(repr(name) for name in close)}?)"
            package = (packages or {}).get(node_id)
            if package:
                text += package_hint(package)
            else:
                text += "; if a custom node provides it, add its package to ComfyUI/custom_nodes.json"
            problems.append((f"input.workflow.{node_id}.class_type", text))
        return problems

    def unsafe_file_inputs(self, file_inputs: Mapping[str, frozenset[str]]) -> list[tuple[str, str]]:
        """(field path, problem) for each file-name input that leaves ComfyUI's folders."""
        problems = []
        for node_id, node in self._nodes.items():
            for name in file_inputs.get(node.get("class_type", ""), ()):
                value = node["inputs"].get(name)
                if isinstance(value, str) and _escapes(value):
                    problems.append(
                        (
                            f"input.workflow.{node_id}.inputs.{name}",
                            f"names a file outside ComfyUI's folders ({self.display_name(node_id)}): "
                            "use a name inside them, without '..' or a leading '/'",
                        )
                    )
        return problems

    def with_files_renamed(self, renames: Mapping[str, str]) -> Workflow:
        """A copy whose inputs naming a file in `renames` (as `name` or `name [input]`) name its new place."""
        if not renames:
            return self
        annotated = {f"{old} [input]": f"{new} [input]" for old, new in renames.items()}
        nodes = {}
        for node_id, node in self._nodes.items():
            inputs = node["inputs"]
            changed = {
                name: renames.get(value) or annotated[value]
                for name, value in inputs.items()
                if isinstance(value, str) and (value in renames or value in annotated)
            }
            nodes[node_id] = {**node, "inputs": {**inputs, **changed}} if changed else node
        return Workflow(nodes)

    def to_prompt(self, swaps: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The graph for POST /prompt (JSON-ready; do not modify), with the node classes in
        `swaps` (class_type -> class_type) replaced."""
        if not swaps:
            return self._nodes
        return {
            node_id: {**node, "class_type": swaps[node["class_type"]]} if node.get("class_type") in swaps else node
            for node_id, node in self._nodes.items()
        }


SUGGESTED_TYPES = 5  # unknown node types that get "did you mean" suggestions


def package_hint(package: str) -> str:
    """What a message about a missing node type says of the package that provides it."""
    if package == "comfy-core":
        return " (a core node of a newer ComfyUI than this image's)"
    return f" (from the custom-node package '{package}': add it to ComfyUI/custom_nodes.json)"
