"""The node packs on the network volume, as start.sh's boot step left them for ComfyUI and the worker.

Contract: `VolumePacks` is the boot step's report (`volume_boot.py` writes it, the worker
reads it from VOLUME_NODE_PACKS): each pack found in the volume's `ComfyUI/custom_nodes/`
with its pin (the commit it holds, else a digest of its Python files) and, when the boot
step did not let ComfyUI load it, why (`refused`). `read` never raises: a missing or
unreadable report is no packs, logged. `states(packs_nodes, import_errors)` says what
became of each once ComfyUI started, as `{"list": "nodes"}` reports them (the contract's
`VolumePack`): `loaded` with its node count, `failed` with ComfyUI's import error, or
`refused` with the boot step's reason.

`pin_of(folder)`: the commit a folder holds (the marker the volume install writes, else
its git checkout's HEAD, read from the files), else `files:<sha256>` of its Python files.
`pinned_commits(path)`: name -> commit of a custom_nodes.json (the image's or the
volume's), leniently (the install scripts check the format).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.contract import VolumePack

log = logging.getLogger(__name__)

PIN_MARKER = ".comfy-worker-commit"  # scripts/image/install_custom_nodes.py writes it (a test keeps them equal)
PACK_FILES_MAX = 2000  # a node pack's Python files digested at most


@dataclass(frozen=True)
class PackOnVolume:
    pin: str
    refused: str | None = None  # why the boot step did not let ComfyUI load it


@dataclass(frozen=True)
class VolumePacks:
    packs: Mapping[str, PackOnVolume] = field(default_factory=dict)
    layer: str | None = None  # the requirements layer ComfyUI imports from, if any

    @property
    def offered(self) -> dict[str, str]:
        """name -> pin of each pack ComfyUI was given to load."""
        return {name: pack.pin for name, pack in self.packs.items() if pack.refused is None}

    def write(self, path: Path) -> None:
        body = {"packs": {name: asdict(pack) for name, pack in sorted(self.packs.items())}, "layer": self.layer}
        path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path | None) -> VolumePacks:
        if path is None:
            return cls()
        try:
            body = json.loads(path.read_text())
            packs = {
                str(name): PackOnVolume(str(pack["pin"]), pack.get("refused")) for name, pack in body["packs"].items()
            }
            return cls(packs, body.get("layer"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("the volume's node pack report %s cannot be read (%s); reporting no volume packs", path, error)
            return cls()

    def without_nodes(self, packs_nodes: Mapping[str, int]) -> list[str]:
        """The offered packs that brought no node types (`packs_nodes`: node types per
        ComfyUI module name, which is a single-file pack's name without `.py`)."""
        return [name for name in self.offered if not packs_nodes.get(name.removesuffix(".py"), 0)]

    def states(self, packs_nodes: Mapping[str, int], import_errors: Mapping[str, str] | None) -> dict[str, VolumePack]:
        """Each pack's fate: `packs_nodes` is how many node types ComfyUI lists per pack,
        `import_errors` what its log said of packs that did not import (None: the log could
        not be read, so a pack that brought no node types counts as failed)."""
        found: dict[str, VolumePack] = {}
        for name, pack in sorted(self.packs.items()):
            nodes = packs_nodes.get(name.removesuffix(".py"), 0)
            if pack.refused is not None:
                found[name] = {"state": "refused", "pin": pack.pin, "nodes": 0, "error": pack.refused}
            elif nodes or (import_errors is not None and name not in import_errors):  # a web-only extension has none
                found[name] = {"state": "loaded", "pin": pack.pin, "nodes": nodes}
            else:
                error = (import_errors or {}).get(name) or "it brought no node types; ComfyUI's log says why"
                found[name] = {"state": "failed", "pin": pack.pin, "nodes": 0, "error": error}
        return found


def pin_of(folder: Path) -> str:
    """The commit `folder` holds, else a digest of its Python files (never raises)."""
    try:
        return (folder / PIN_MARKER).read_text().strip()
    except OSError:
        pass
    return git_head(folder) or files_digest(folder)


def git_head(folder: Path) -> str | None:
    """The commit of a git checkout's HEAD, from its files (no git process at start)."""
    git = folder / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    except OSError:
        pass
    return None


def files_digest(pack: Path) -> str:
    """A node pack not pinned by commit: `files:<sha256>` of its Python files' paths and bytes."""
    files = [pack] if pack.is_file() else sorted(pack.rglob("*.py"))[:PACK_FILES_MAX]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(pack.parent)).encode() + b"\0")
        try:
            digest.update(file.read_bytes())
        except OSError:
            digest.update(b"unreadable")
    return f"files:{digest.hexdigest()}"


def pinned_commits(path: Path) -> dict[str, str]:
    """name -> commit of a custom_nodes.json; {} when it is missing or unreadable."""
    try:
        entries = json.loads(path.read_text()).get("custom_nodes", [])
    except (OSError, ValueError, AttributeError):
        return {}
    return {
        str(entry["name"]): str(entry["commit"])
        for entry in entries
        if isinstance(entry, dict) and "name" in entry and "commit" in entry
    }
