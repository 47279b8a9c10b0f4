"""The two pinned manifests in ComfyUI/: custom nodes and models. Format and validation.

Standard library only: the image build reads them before the worker's own
dependencies are installed (so a code change never re-downloads models).

ComfyUI/custom_nodes.json
    {"custom_nodes": [
        {"name": "ComfyUI-VideoHelperSuite",                      # folder under custom_nodes/
         "repo": "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite",
         "commit": "<40 hex digits>"}                             # exact commit, never a branch
    ]}

ComfyUI/models.json
    {"models": [
        {"repo_id": "Comfy-Org/stable-diffusion-v1-5-archive",   # Hugging Face repository
         "file": "v1-5-pruned-emaonly-fp16.safetensors",         # path inside it
         "revision": "<commit, or a branch/tag: sha256 pins the content either way>",
         "sha256": "<64 hex digits>",
         "folder": "checkpoints",                                 # ComfyUI model folder
         "name": "<optional: file name in the folder; default the file's base name>",
         "from": "<optional: 'image' (default: baked in at build) or 'runpod-cache'>"}
    ]}

`"from": "runpod-cache"`: not baked; RunPod's cached models place the repository
under /runpod-volume/huggingface-cache/hub/ (the endpoint's Model setting), and
start.sh links the file into the model folder (scripts/image/link_cached_models.py).

`load_*` return typed entries or raise ManifestError listing every problem with
its place (`models[0].sha256: ...`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
REPO_ID = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")
MODEL_SOURCES = ("image", "runpod-cache")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class CustomNode:
    name: str
    repo: str
    commit: str


@dataclass(frozen=True)
class Model:
    repo_id: str
    file: str
    revision: str
    sha256: str
    folder: str
    name: str
    source: str = "image"  # or "runpod-cache"

    @property
    def relative_path(self) -> PurePosixPath:
        return PurePosixPath(self.folder) / self.name


def load_custom_nodes(path: Path) -> list[CustomNode]:
    entries, problems = _entries(path, "custom_nodes")
    nodes = []
    for index, entry in enumerate(entries):
        where = f"custom_nodes[{index}]"
        found = _check_fields(entry, where, required={"name", "repo", "commit"}, optional=set(), problems=problems)
        if not found:
            continue
        if not SAFE_NAME.match(str(entry["name"])):
            problems.append(f"{where}.name: must be a folder name (letters, digits, '.', '_', '-')")
        if not re.match(r"^(https://|file://|/|http://(127\.0\.0\.1|localhost)[:/])", str(entry["repo"])):
            problems.append(
                f"{where}.repo: must be an https:// git URL (or, for tests, a local path or a loopback http:// URL)"
            )
        if not HEX40.match(str(entry["commit"])):
            problems.append(f"{where}.commit: must be a full 40-hex commit id, not a branch or tag")
        nodes.append(CustomNode(str(entry["name"]), str(entry["repo"]), str(entry["commit"])))
    names = [node.name for node in nodes]
    problems += [f"custom_nodes: '{n}' appears twice" for n in sorted({n for n in names if names.count(n) > 1})]
    _raise_if(problems, path)
    return nodes


def load_models(path: Path) -> list[Model]:
    entries, problems = _entries(path, "models")
    models = []
    for index, entry in enumerate(entries):
        where = f"models[{index}]"
        required = {"repo_id", "file", "revision", "sha256", "folder"}
        if not _check_fields(entry, where, required=required, optional={"name", "from"}, problems=problems):
            continue
        file = str(entry["file"])
        name = str(entry.get("name") or PurePosixPath(file).name)
        if not REPO_ID.match(str(entry["repo_id"])):
            problems.append(f"{where}.repo_id: must look like 'owner/repository'")
        if file.startswith("/") or ".." in PurePosixPath(file).parts:
            problems.append(f"{where}.file: must be a path inside the repository")
        if not HEX64.match(str(entry["sha256"])):
            problems.append(f"{where}.sha256: must be 64 lowercase hex digits")
        if not SAFE_NAME.match(str(entry["folder"])):
            problems.append(f"{where}.folder: must be a ComfyUI model folder name such as 'checkpoints'")
        if not SAFE_NAME.match(name):
            problems.append(f"{where}.name: must be a plain file name")
        source = str(entry.get("from", "image"))
        if source not in MODEL_SOURCES:
            problems.append(f"{where}.from: must be one of {', '.join(MODEL_SOURCES)}")
        models.append(
            Model(
                str(entry["repo_id"]),
                file,
                str(entry["revision"]),
                str(entry["sha256"]),
                str(entry["folder"]),
                name,
                source,
            )
        )
    targets = [str(m.relative_path) for m in models]
    problems += [f"models: two entries write {t}" for t in sorted({t for t in targets if targets.count(t) > 1})]
    _raise_if(problems, path)
    return models


def _entries(path: Path, key: str) -> tuple[list, list[str]]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read as JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise ManifestError(f"{path}: must be an object with a '{key}' list")
    return document[key], []


def _check_fields(entry, where: str, required: set[str], optional: set[str], problems: list[str]) -> bool:
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be an object")
        return False
    missing = sorted(required - entry.keys())
    unknown = sorted(entry.keys() - required - optional)
    problems += [f"{where}.{field}: is required" for field in missing]
    problems += [f"{where}.{field}: is not a known field" for field in unknown]
    return not missing


def _raise_if(problems: list[str], path: Path) -> None:
    if problems:
        raise ManifestError(f"{path}:\n  " + "\n  ".join(problems))
