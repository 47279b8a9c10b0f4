"""Workflows saved in ComfyUI's UI format, converted to the API format the server runs.

Contract: `is_ui_format(raw)` tells the editor's save format (`nodes` + `links`) from
the API format. `to_api_format(raw, catalog)` converts it with comfy-cli's
converter (`comfy_cli.workflow_to_api`, which handles subgraphs, muted and bypassed
nodes, reroutes, primitive nodes and Get/Set nodes) against the running ComfyUI's
GET /object_info, and returns the API-format dict, or raises `InvalidJobInput`
naming every node the converter could not turn into a runnable one:

- a node type ComfyUI does not have (the converter passes those through
  silently): its id, title, and the custom-node package the editor recorded
  (`properties.cnr_id` / `aux_id`), so the message says what to install;
- a node the converter skipped because it failed on it.

ComfyUI's own validation still runs when the prompt is queued.

comfy-cli is imported on first use, not at import time: its import chain takes
~0.4 s, which `preload()` lets the worker pay while ComfyUI boots.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..core.errors import InvalidJobInput
from .node_catalog import NodeCatalog
from .workflow import package_hint

log = logging.getLogger(__name__)

# Node types that exist only in the editor: the converter drops them (it resolves
# what flows through them), so they are never "unknown".
UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "PrimitiveNode", "Reroute", "GetNode", "SetNode", "LoadImageOutput"})
_MUTED, _BYPASSED = 2, 4  # litegraph node modes


def is_ui_format(raw: Any) -> bool:
    return isinstance(raw, Mapping) and isinstance(raw.get("nodes"), list) and isinstance(raw.get("links"), list)


@functools.cache
def _converter() -> tuple[Callable[[dict, dict], dict], type[Exception]]:
    from comfy_cli.workflow_to_api import WorkflowConversionError, convert_ui_to_api  # type: ignore[import-untyped]

    return convert_ui_to_api, WorkflowConversionError


def preload() -> None:
    """Import the converter now (blocking: call it in a thread)."""
    _converter()


def to_api_format(raw: Mapping[str, Any], catalog: NodeCatalog) -> dict[str, Any]:
    """The API-format graph of a UI-format workflow, or `InvalidJobInput` naming each problem node."""
    unknown = unknown_node_types(raw, catalog)
    if unknown:
        raise InvalidJobInput(unknown)
    convert, conversion_error = _converter()
    try:
        api = convert(dict(raw), dict(catalog.raw))
    except conversion_error as exc:
        raise InvalidJobInput([("input.workflow", f"could not be converted from the UI format: {exc}")]) from None
    problems = _dropped_nodes(raw, api) + [
        (f"input.workflow.{node_id}", f"has node type '{node.get('class_type')}', which this ComfyUI does not have")
        for node_id, node in api.items()
        if node.get("class_type") not in catalog
    ]
    if problems:
        raise InvalidJobInput(problems)
    if not api:
        raise InvalidJobInput([("input.workflow", "has no nodes that run (all are muted, bypassed or notes)")])
    return api


def unknown_node_types(raw: Mapping[str, Any], catalog: NodeCatalog) -> list[tuple[str, str]]:
    """(field path, problem) for each node, top level or inside a subgraph, whose type
    ComfyUI lacks. Muted and bypassed nodes do not run, so they do not count."""
    return [
        (f"input.workflow.nodes[id={node.get('id')}]", _unknown_message(scope, node, node_type))
        for scope, node, node_type in _nodes_that_run(raw)
        if node_type not in catalog
    ]


def _nodes_that_run(raw: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], str]]:
    """(scope, node, type) for each node, top level (scope "") or inside a subgraph, that
    becomes a node of the API graph: not muted or bypassed, not editor-only, not the
    instance of a subgraph (its inner nodes take its place)."""
    subgraphs = [graph for graph in (raw.get("definitions") or {}).get("subgraphs") or [] if isinstance(graph, Mapping)]
    subgraph_ids = {str(graph.get("id")) for graph in subgraphs}
    scopes: list[tuple[str, Any]] = [("", raw.get("nodes"))]
    scopes += [(f"subgraph '{graph.get('name') or graph.get('id')}' ", graph.get("nodes")) for graph in subgraphs]
    for scope, nodes in scopes:
        for node in nodes or []:
            if not isinstance(node, Mapping) or node.get("mode") in (_MUTED, _BYPASSED):
                continue
            node_type = str(node.get("type") or "")
            if node_type not in UI_ONLY_TYPES and node_type not in subgraph_ids:
                yield scope, node, node_type


def packages_by_node(raw: Any) -> dict[str, str]:
    """Node id -> the package the editor recorded for it (`properties.cnr_id` / `aux_id`), for
    the top-level nodes of a UI graph, whose ids the API format keeps: an API workflow sent
    with its UI graph (`extra_pnginfo.workflow`, as the editor queues) names them too."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("nodes"), list):
        return {}
    found = {str(node.get("id")): _package(node) for node in raw["nodes"] if isinstance(node, Mapping)}
    return {node_id: package for node_id, package in found.items() if package}


def _package(node: Mapping[str, Any]) -> str:
    properties = node.get("properties")
    if not isinstance(properties, Mapping):
        return ""
    package = properties.get("cnr_id") or properties.get("aux_id")
    return package if isinstance(package, str) else ""


def _unknown_message(scope: str, node: Mapping[str, Any], node_type: str) -> str:
    title = node.get("title")
    package = _package(node)
    message = f"{scope}node {node.get('id')}" + (f" '{title}'" if title and title != node_type else "")
    message += f" has type '{node_type}', which this ComfyUI does not have"
    return message + (package_hint(package) if package else "")


def _dropped_nodes(raw: Mapping[str, Any], api: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Top-level nodes that should run but that the converter left out (it logs and
    skips a node it fails on). Nodes inside subgraphs get new ids, so only the top
    level can be checked this way."""
    return [
        (
            f"input.workflow.nodes[id={node.get('id')}]",
            f"node {node.get('id')} ({node_type}) could not be converted from the UI format "
            "(the worker's log has the converter's reason); export the workflow in API format instead",
        )
        for scope, node, node_type in _nodes_that_run(raw)
        if not scope and str(node.get("id")) not in api
    ]
