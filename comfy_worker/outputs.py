"""Collect a finished prompt's output files and encode them for the job result.

Contract: `files_in_history` lists the files ComfyUI reports for the prompt (every
output key of every node, e.g. `images`, `gifs`, `audio`); `encode_outputs` reads
each from disk and returns worker-comfyui 5.x entries:

    {"filename", "type": "base64", "data", "node_id", "subfolder", "mime_type"}

Temporary files (PreviewImage, type "temp") are left out of the result but still
removed with the job. Reading and base64 run in a worker thread so large videos
never block the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import WorkerError
from .job_files import JobFiles
from .settings import Settings


@dataclass(frozen=True)
class OutputFile:
    node_id: str
    filename: str
    subfolder: str
    folder_type: str  # "output", "temp" or "input" (a node echoing an input file)
    path: Path

    @property
    def mime_type(self) -> str:
        return mimetypes.guess_type(self.filename)[0] or "application/octet-stream"


def files_in_history(history: dict[str, Any], settings: Settings, job_files: JobFiles) -> list[OutputFile]:
    """Every file in the prompt's history; output and temp files are registered for removal."""
    roots = {"output": settings.output_dir, "temp": settings.temp_dir, "input": settings.input_dir}
    files = []
    for node_id, node_output in (history.get("outputs") or {}).items():
        for items in node_output.values():
            if not isinstance(items, list):
                continue
            for item in items:
                if not (isinstance(item, dict) and "filename" in item and item.get("type") in roots):
                    continue
                root = roots[item["type"]]
                path = job_files.resolve(root, item.get("subfolder", ""), item["filename"])
                if item["type"] != "input":  # inputs belong to the job's uploads, or to the image
                    job_files.add(path)
                files.append(OutputFile(node_id, item["filename"], item.get("subfolder", ""), item["type"], path))
    return files


async def encode_outputs(files: list[OutputFile]) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_encode_all, [f for f in files if f.folder_type == "output"])


def _encode_all(files: list[OutputFile]) -> list[dict[str, Any]]:
    entries = []
    for file in files:
        try:
            data = file.path.read_bytes()
        except OSError as exc:
            raise WorkerError(f"output {file.filename} of node {file.node_id} cannot be read: {exc}") from exc
        entries.append(
            {
                "filename": file.filename,
                "type": "base64",
                "data": base64.b64encode(data).decode("ascii"),
                "node_id": file.node_id,
                "subfolder": file.subfolder,
                "mime_type": file.mime_type,
            }
        )
    return entries
