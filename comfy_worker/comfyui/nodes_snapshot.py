"""What ComfyUI offered when it was last asked (GET /object_info), kept on disk, so the
worker is ready the moment ComfyUI answers instead of ~0.1 s later.

Contract: `save(path, comfyui_path, object_info, volume_packs)` writes the node list with a
fingerprint of the ComfyUI it came from (its version file, the names and change
entry-file times of its custom nodes, the volume's node packs), atomically;
`load(path, comfyui_path, volume_packs)` returns
the node list, or None when there is none, it cannot be read, or the fingerprint no
longer matches (a custom node was added, removed or replaced). Neither raises.

The image build writes the snapshot (scripts/image/check_workflows.py), and the worker
rewrites it whenever it asks ComfyUI itself. What the worker takes from a snapshot is
only provisional (`ComfyCapabilities.learn_now`): a job refused against it is checked
again against ComfyUI's own answer, and the answers that list models always ask ComfyUI,
since model files come and go on a network volume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def fingerprint(comfyui_path: Path, volume_packs: Path | None = None) -> str:
    """Changes when ComfyUI's version changes or a custom node is added, removed or
    replaced (its entry file's change time: a folder's own changes with every
    __pycache__ written into it), and when the network volume's node packs do (the boot
    step's report, `volume_packs`, names each with its pin)."""
    digest = hashlib.sha256()
    if volume_packs is not None:
        with contextlib.suppress(OSError):
            digest.update(volume_packs.read_bytes())
    version_file = comfyui_path / "comfyui_version.py"
    if version_file.is_file():
        digest.update(version_file.read_bytes())
    custom_nodes = comfyui_path / "custom_nodes"
    if custom_nodes.is_dir():
        for entry in sorted(os.scandir(custom_nodes), key=lambda entry: entry.name):
            if entry.name.startswith((".", "__")):
                continue
            entry_file = Path(entry.path) / "__init__.py" if entry.is_dir() else Path(entry.path)
            changed = entry_file.stat().st_mtime_ns if entry_file.exists() else 0
            digest.update(f"{entry.name}\0{changed}\0".encode())
    return digest.hexdigest()


def load(path: Path, comfyui_path: Path, volume_packs: Path | None = None) -> dict[str, Any] | None:
    try:
        saved = json.loads(path.read_text())
        if saved.get("fingerprint") != fingerprint(comfyui_path, volume_packs):
            log.info("the node snapshot %s is of another ComfyUI or other custom nodes; asking ComfyUI", path)
            return None
        object_info = saved["object_info"]
        return object_info if isinstance(object_info, dict) else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("the node snapshot %s cannot be read (%s); asking ComfyUI", path, error)
        return None


def save(path: Path, comfyui_path: Path, object_info: dict[str, Any], volume_packs: Path | None = None) -> None:
    body = json.dumps({"fingerprint": fingerprint(comfyui_path, volume_packs), "object_info": object_info})
    partial: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
            partial = file.name
            file.write(body)
        os.replace(partial, path)
    except OSError as error:
        log.warning("the node snapshot %s cannot be written (%s); the next start asks ComfyUI", path, error)
        if partial is not None:
            with contextlib.suppress(OSError):
                os.unlink(partial)
