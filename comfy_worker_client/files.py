"""Jobs from files, outputs into files: what the command line, scripts and the editor need around a job."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from .contract import OUTPUT_LISTS

DOWNLOAD_CHUNK_BYTES = 1024 * 1024
DOWNLOAD_TIMEOUT_S = 300  # one output file; a video of gigabytes streams within it


def job_input_from_files(workflow: Path, images: Sequence[Path] = (), **options: Any) -> dict[str, Any]:
    """A job input from a workflow file (API or UI format) or a whole job file
    (`{"input": {...}}`, like test_input.json), and input files (sent as base64)."""
    loaded = json.loads(workflow.read_text())
    is_job_file = isinstance(loaded, dict) and isinstance(loaded.get("input"), dict)
    job: dict[str, Any] = dict(loaded["input"]) if is_job_file else {"workflow": loaded}
    if images:
        files = [{"name": p.name, "image": base64.b64encode(p.read_bytes()).decode()} for p in images]
        job["images"] = [*job.get("images", []), *files]
    job.update({key: value for key, value in options.items() if value is not None})
    return job


def output_file_name(job_id: str, entry: dict[str, Any]) -> str:
    """`<job id>-<node id>-<ComfyUI's file name>`: ComfyUI numbers files per run
    (ComfyUI_00001_.png each time on a fresh worker), so its name alone is not unique.
    Only the last part of each survives: a name from the endpoint never leaves the folder."""
    return Path(f"{job_id}-{entry.get('node_id', 'node')}-{Path(entry['filename']).name}").name


async def save_outputs(
    output: dict[str, Any], path_for: Callable[[dict[str, Any]], Path]
) -> list[tuple[dict[str, Any], Path]]:
    """Writes every output file of a result (base64 decoded, a URL streamed) at the path
    `path_for(entry)` gives (it may make the file, to hold the name), off the event loop;
    (entry, path) of each. A file that fails to be written is not left there, whole or in part."""
    saved = []
    for list_name in OUTPUT_LISTS.values():
        for entry in output.get(list_name) or []:
            path = path_for(entry)
            try:
                if entry.get("type") == "base64":
                    await asyncio.to_thread(path.write_bytes, base64.b64decode(entry["data"]))
                else:
                    await download(entry["data"], path)
            except BaseException:
                await asyncio.to_thread(path.unlink, missing_ok=True)
                raise
            saved.append((entry, path))
    return saved


async def download(url: str, path: Path) -> None:
    """The URL's body streamed into `path` (never whole in memory). A presigned URL carries
    its own credentials: the endpoint's key is not sent with it."""
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        response.raise_for_status()
        with path.open("wb") as file:
            async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                await asyncio.to_thread(file.write, chunk)
