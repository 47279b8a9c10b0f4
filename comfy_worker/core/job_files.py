"""ComfyUI's job folders, and the files a job puts in them, removed when the job ends.

Contract: `JobFolders` names ComfyUI's `input/`, `output/` and `temp/` and turns a
(folder type, subfolder, file name) that ComfyUI reports into a path, refusing
anything that escapes its folder (`UnsafePath`): a crafted subfolder or file name
can never point the worker at other files. `JobFiles` is the job's ledger: stages
`add` every path they cause to exist (input files, converted copies) and create
folders through it (`make_folders`), the worker adds the prompt's outputs it found
in the history (`add_outputs`, once), and `remove_all` runs when the job ends,
whatever its outcome, so nothing piles up on a warm worker. It removes only what
the job created: the files it added, and the folders it made once they are empty;
a folder that existed before the job stays.

A saver that encodes in the background (comfyui_nodes/worker_save_image) marks a
file it is still writing with `<name>.writing`: `written()` waits for such files
before they are read, and removal waits for them too (bounded, WRITE_WAIT_S), so a
late write never leaves a file behind. A write that failed leaves its cause in
`<name>.failed` (`write_failure`), removed with the job's files. A name too long for a
marker beside it has none: such a file is never being written in the background.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UnsafePath

log = logging.getLogger(__name__)

WRITING_SUFFIX = ".writing"
FAILED_SUFFIX = ".failed"
NAME_MAX_BYTES = 255  # a file name's limit on Linux file systems
WRITE_POLL_S = 0.001  # a stat per pending file: cheap, and the wait is short
WRITE_WAIT_S = 60.0


def writing(path: Path) -> Path:
    """The marker of `path` while a background saver writes it."""
    return path.with_name(path.name + WRITING_SUFFIX)


def being_written(path: Path) -> bool:
    """Whether a background saver still writes `path` (False for a name with no room for
    the marker: the file system refuses to even look the marker up)."""
    try:
        return writing(path).exists()
    except OSError:
        return False


def write_failure(path: Path) -> str | None:
    """Why a background saver could not write `path` (its `<name>.failed` note), or None."""
    try:
        return path.with_name(path.name + FAILED_SUFFIX).read_text(errors="replace").strip() or "unknown cause"
    except OSError:
        return None


@dataclass(frozen=True)
class JobFolders:
    input: Path
    output: Path
    temp: Path

    @classmethod
    def of(cls, comfyui_path: Path) -> JobFolders:
        base = comfyui_path.resolve()
        return cls(input=base / "input", output=base / "output", temp=base / "temp")

    @property
    def roots(self) -> tuple[Path, Path, Path]:
        return (self.input, self.output, self.temp)

    def folder(self, folder_type: str) -> Path | None:
        """The folder for ComfyUI's `type` field ("input", "output", "temp"), or None."""
        return {"input": self.input, "output": self.output, "temp": self.temp}.get(folder_type)

    def resolve(self, root: Path, subfolder: str, filename: str) -> Path:
        """root/subfolder/filename, refusing anything that escapes root."""
        path = (root / subfolder / filename).resolve()
        if not path.is_relative_to(root):
            raise UnsafePath(
                f"ComfyUI named a file outside its {root.name}/ folder: {subfolder}/{filename}",
                {"subfolder": subfolder, "filename": filename},
            )
        return path


class JobFiles:
    def __init__(self, folders: JobFolders):
        self.folders = folders
        self.has_outputs = False
        self._paths: dict[Path, None] = {}  # an ordered set: each file is removed once (see remove_all)
        self._folders: list[Path] = []

    def add(self, path: Path) -> None:
        self._refuse_outside(path)
        self._paths[path] = None

    def add_outputs(self, paths: Iterable[Path]) -> None:
        """Register the files the prompt wrote (output and temp files, from its history)."""
        for path in paths:
            self.add(path)
            if len(os.fsencode(path.name + FAILED_SUFFIX)) <= NAME_MAX_BYTES:
                self.add(path.with_name(path.name + FAILED_SUFFIX))  # a failed background write's note
        self.has_outputs = True

    def make_folders(self, folder: Path) -> None:
        """Create folder and its missing parents inside a root, remembering which were new."""
        self._refuse_outside(folder)
        missing = []
        while not folder.exists() and folder not in self.folders.roots:
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            try:
                new.mkdir()
            except FileExistsError:  # made meanwhile by someone else: not ours
                continue
            self._folders.append(new)

    def expect_folders(self, folders: Iterable[Path]) -> None:
        """Folders the prompt may create (savers' subfolders): those missing now, and
        their missing parents inside a root, are removed at the end if empty. Those that
        exist now are left alone, as is anything outside the roots."""
        for folder in folders:
            if not any(folder.is_relative_to(root) for root in self.folders.roots):
                continue
            while not folder.exists() and folder not in self.folders.roots:
                if folder not in self._folders:
                    self._folders.append(folder)
                folder = folder.parent

    def _refuse_outside(self, path: Path) -> None:
        if not any(path.is_relative_to(root) for root in self.folders.roots):
            raise UnsafePath(f"{path.name} is outside ComfyUI's job folders", {"path": str(path)})

    async def written(self, paths: Iterable[Path], wait_s: float = WRITE_WAIT_S) -> None:
        """Wait (at most `wait_s`) until none of `paths` is still being written by a saver that
        encodes in the background (`<name>.writing` exists until the file is complete)."""
        pending = [path for path in paths if being_written(path)]
        deadline = time.monotonic() + wait_s
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(WRITE_POLL_S)
            pending = [path for path in pending if being_written(path)]
        if pending:
            log.warning("%d output file(s) still being written after %g s, e.g. %s", len(pending), wait_s, pending[0])

    async def remove_all_async(self) -> None:
        """`remove_all` once background writes of the job's files have ended, as a clean-up
        step of an async exit stack (a job's few files: no thread)."""
        await self.written(self._paths)
        self.remove_all()

    def remove_all(self) -> None:
        """Remove the files, then the folders the job made, deepest first, if empty."""
        for path in self._paths:
            try:
                # Once, and never `<name>.writing`: the moment the job's file is gone ComfyUI
                # may give its name to the next prompt, whose file a second removal would take.
                path.unlink(missing_ok=True)
            except OSError as exc:  # keep going: one stuck file must not keep the rest
                log.warning("could not remove %s: %s", path, exc)
        for folder in sorted(self._folders, key=lambda f: len(f.parts), reverse=True):
            try:
                folder.rmdir()
            except OSError:  # not empty: something else lives there now
                pass
        self._paths.clear()
        self._folders.clear()
