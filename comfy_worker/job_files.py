"""Files a job puts on disk, removed when the job ends, whatever its outcome.

Contract: stages `add` every path they cause to exist (uploaded inputs, ComfyUI's
output and temp files); the handler calls `remove_all` in a `finally`, so nothing
piles up on a warm worker. Paths outside the allowed roots are refused, which also
keeps a crafted subfolder/filename from pointing the worker at other files.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class JobFiles:
    def __init__(self, allowed_roots: list[Path]):
        self._roots = [root.resolve() for root in allowed_roots]
        self._paths: list[Path] = []

    def resolve(self, root: Path, subfolder: str, filename: str) -> Path:
        """root/subfolder/filename, refusing anything that escapes root."""
        path = (root / subfolder / filename).resolve()
        if not path.is_relative_to(root.resolve()):
            raise ValueError(f"{subfolder}/{filename} is outside {root}")
        return path

    def add(self, path: Path) -> None:
        if not any(path.is_relative_to(root) for root in self._roots):
            raise ValueError(f"{path} is outside the job folders")
        self._paths.append(path)

    def remove_all(self) -> None:
        """Remove the files, then any folder under a root they leave empty (a job's subfolder)."""
        for path in self._paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # keep going: one stuck file must not keep the rest
                log.warning("could not remove %s: %s", path, exc)
                continue
            self._remove_empty_parents(path)
        self._paths.clear()

    def _remove_empty_parents(self, path: Path) -> None:
        folder = path.parent
        while folder not in self._roots and any(folder.is_relative_to(root) for root in self._roots):
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): stop climbing
                return
            folder = folder.parent
