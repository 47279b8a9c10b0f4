"""Provenance: what made a result, so that it can be told apart from others and run again.

Contract: `ProvenanceKeeper(settings).of(sent, ran, comfy)` returns the `provenance` every
result carries:

    {"comfyui": {"version": "0.3.75", "commit": "f8b9..."},
     "node_packs": {"<custom_nodes folder>": "<commit>" | "files:<sha256>"},
     "models": {"checkpoints/v1-5.safetensors": "<sha256>"},
     "seeds": {"3.seed": 42},
     "workflow": {<the API graph as the job gave it, seeds included>}}

Read once per worker: ComfyUI's version (its own GET /system_stats) and commit (the pin in
`ComfyUI/comfyui.lock`), and each node pack in COMFYUI_PATH's `custom_nodes/`: the commit
the image pinned it at (`ComfyUI/custom_nodes.json`), else a digest of its Python files,
and each pack the network volume offered ComfyUI with its pin (`node_packs/volume_packs.py`).
Per job: each model file the graph names (an input whose value has a model file's
extension), found in ComfyUI's model folders, with its SHA-256 (`FileHashes`: the marker
the build wrote when it verified the file, else computed once in a thread and kept by path,
size and modification time; the worker runs this beside the prompt, not before it).

`differences(recorded, here)` says, in words, what a replay of `recorded` would run
differently on this worker: another ComfyUI, a node pack missing or at another commit, a
model file missing or with another hash. A `{"replay": <provenance>}` job runs only when
there is none (`ReplayRefused` otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..comfyui.capabilities import ComfyCapabilities
from ..core.errors import ReplayRefused
from ..core.settings import Settings
from ..node_packs.volume_packs import VolumePacks, files_digest, pinned_commits
from ..request.job_input import RecordedRun
from ..request.workflow import Workflow
from .model_cache import hash_file

log = logging.getLogger(__name__)

WORKER_ROOT = Path(__file__).resolve().parents[2]  # /worker in the image: ComfyUI/comfyui.lock beside it
MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2", ".onnx")


class FileHashes:
    """SHA-256 of model files, each computed at most once per path, size and modification time."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}

    def sha256(self, path: Path) -> str:
        """Blocking: reads the file the first time (about 2 s a GB)."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._known:
            self._known[key] = built_marker(path) or hash_file(path)
        return self._known[key]


def built_marker(path: Path) -> str | None:
    """The SHA-256 the image build (scripts/image/fetch_models.py) wrote beside a file it verified."""
    for candidate in {path, path.resolve()}:
        marker = candidate.with_name(f".{candidate.name}.sha256")
        try:
            text = marker.read_text().strip()
        except OSError:
            continue
        if re.fullmatch(r"[0-9a-f]{64}", text):
            return text
    return None


class ProvenanceKeeper:
    """The worker's record keeper: what is fixed is read once, model hashes are kept."""

    def __init__(self, settings: Settings, worker_root: Path = WORKER_ROOT):
        self._comfyui_path = settings.comfyui_path
        self._worker_root = worker_root
        self._software: dict[str, Any] | None = None
        self._folders: Mapping[str, list[str]] | None = None
        self.hashes = FileHashes()

    async def of(self, sent: Workflow, ran: Workflow, comfy: ComfyCapabilities) -> dict[str, Any]:
        """The provenance of a run of `sent` (the graph as the job gave it, seeds set) as `ran`
        (its models fetched: a model by URL is named by its file in the model cache)."""
        if self._software is None:
            version = (await comfy.comfy.offers()).version  # the running ComfyUI's own word
            self._software = await asyncio.to_thread(self._read_software, version, comfy.volume_packs)
        if self._folders is None:  # ComfyUI's model folders are set when it starts
            self._folders = await comfy.comfy.model_folders()
        names = model_files(ran)  # none (a model-free graph): no thread to hop to
        models = await asyncio.to_thread(self._hash_models, names, self._folders) if names else {}
        return {**self._software, "models": models, "seeds": sent.seeds(), "workflow": sent.to_prompt()}

    def _hash_models(self, names: list[str], folders: Mapping[str, list[str]]) -> dict[str, str | None]:
        """`<folder>/<file>` -> its SHA-256, for the first of ComfyUI's model folders that holds
        each file; `?/<file>` -> None for a file none holds (ComfyUI's refusal names it)."""
        found: dict[str, str | None] = {}
        for name in names:
            holder = next(
                ((folder, Path(root) / name) for folder, roots in folders.items() for root in roots
                 if (Path(root) / name).is_file()),
                None,
            )  # fmt: skip
            if holder is None:
                found[f"?/{name}"] = None
                continue
            try:
                found[f"{holder[0]}/{name}"] = self.hashes.sha256(holder[1])
            except OSError as exc:  # unreadable now: ComfyUI's own load will say why
                log.warning("model file %s/%s not hashed: %s", holder[0], name, exc.strerror)
                found[f"{holder[0]}/{name}"] = None
        return found

    def _read_software(self, version: str, volume_packs: VolumePacks) -> dict[str, Any]:
        lock = _read_assignments(self._worker_root / "ComfyUI" / "comfyui.lock")
        comfyui = {"version": version, "commit": lock.get("COMFYUI_COMMIT")}
        return {"comfyui": comfyui, "node_packs": {**self._image_packs(), **volume_packs.offered}}

    def _image_packs(self) -> dict[str, str]:
        pinned = pinned_commits(self._worker_root / "ComfyUI" / "custom_nodes.json")
        packs: dict[str, str] = {}
        folder = self._comfyui_path / "custom_nodes"
        for pack in sorted(folder.iterdir()) if folder.is_dir() else []:
            if pack.name.startswith((".", "__")) or not (pack.is_dir() or pack.suffix == ".py"):
                continue
            packs[pack.name] = pinned.get(pack.name) or files_digest(pack)
        return packs


def model_files(workflow: Workflow) -> list[str]:
    """The model files the graph names: every string input with a model file's extension (any
    loader's, custom ones included, without asking ComfyUI which inputs are loaders)."""
    return sorted(
        {
            value
            for node_id in workflow
            for value in workflow.inputs(node_id).values()
            if isinstance(value, str) and value.lower().endswith(MODEL_EXTENSIONS)
        }
    )


def _read_assignments(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def differences(recorded: RecordedRun, here: Mapping[str, Any]) -> list[str]:
    """What a replay of `recorded` would run differently on this worker (`here`), in words."""
    found = []
    for key in ("version", "commit"):
        was, now = recorded.comfyui.get(key), here["comfyui"].get(key)
        if was != now:
            found.append(f"ComfyUI {key} {was} ran it; this worker has {now}")
    found += _differing(recorded.node_packs, here["node_packs"], "node pack '{}'", "was at {}; this worker's is at {}")
    found += _differing(recorded.models, here["models"], "model file {}", "had sha256 {}; this worker's has {}")
    return found


def _differing(recorded: Mapping[str, Any], here: Mapping[str, Any], name: str, changed: str) -> list[str]:
    found = []
    for key, was in recorded.items():
        now = here.get(key)
        if now is None:
            found.append(f"{name.format(key)} ran it; this worker does not have it")
        elif now != was:
            found.append(f"{name.format(key)} {changed.format(was, now)}")
    return found


def check_replay(recorded: RecordedRun, here: Mapping[str, Any]) -> None:
    """Raises `ReplayRefused` naming every difference between the recorded run and this worker."""
    found = differences(recorded, here)
    if found:
        raise ReplayRefused(
            "this worker would not run the recorded job the same way: " + "; ".join(found), {"differences": found}
        )
