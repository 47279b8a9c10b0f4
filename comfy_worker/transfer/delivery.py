"""Deliver a job's output files: still-image format, then inline base64 or bucket URLs.

Contract: `deliver_outputs` returns the result's output lists,

    {"images": [...], "videos": [...], "audio": [...], "files": [...], "text": [...]}

(`images` always; the others when not empty). Each file entry keeps
worker-comfyui's fields and adds where it came from and what it is:

    {"filename", "type": "base64" | "s3_url", "data": <base64 or URL>,
     "node_id", "subfolder", "media", "mime_type", "animated"}

Rules, in order:
1. Output-folder files are delivered; previews (temp) only if the job asks.
2. Still images are converted to the job's format (webp or jpeg, with quality)
   first; animated images and videos are left as they are.
3. Where: `storage: "s3"` uploads (an error if no bucket is configured);
   `"auto"` (default) uploads when a bucket is configured; otherwise, and for
   `"base64"`, files come back inline, after a size check: over MAX_RESPONSE_BYTES
   they go to the bucket if there is one, else the job fails with `OutputTooLarge`
   (size, limit, ways out). Never a result RunPod would reject.
`deliver_outputs` is blocking file and network work: `Delivery.collect` runs it in
a thread (asyncio.to_thread), so large videos never block the event loop, except
where `is_quick` says it is only reading and encoding a few small files, which
costs less than the thread hop (tens of microseconds against ~0.1 ms). The store
(an `OutputStore`, or None without a bucket) is the worker's `Delivery`'s, built once.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..comfyui.history import OutputFile, files_in_history, texts_in_history
from ..core.contract import output_list
from ..core.errors import DiskFull, InvalidJobInput, JobTimedOut, OutputTooLarge, OutputUnreadable, is_disk_full
from ..core.job import JobContext, OutputStore, stored_name
from ..core.job_files import JobFiles, write_failure
from ..core.settings import Settings
from ..request.job_input import NO_BUCKET_FOR_S3, JobStorage, OutputOptions
from .storage import S3Storage, output_store

ENTRY_OVERHEAD_BYTES = 512  # field names, file name, mime type... per entry, generously
FORMATS = {"webp": ("WEBP", ".webp", "image/webp"), "jpeg": ("JPEG", ".jpg", "image/jpeg")}


QUICK_DELIVERY_BYTES = 256 * 1024
FULL_DISK_FREE_BYTES = 1024 * 1024  # less free than this where an output failed: the disk is full


def is_quick(files: list[OutputFile], options: OutputOptions, store: OutputStore | None) -> bool:
    """No conversion, no possible upload, and at most QUICK_DELIVERY_BYTES to read."""
    if options.format != "png" or store is not None:
        return False
    try:
        return sum(file.path.stat().st_size for file in files) <= QUICK_DELIVERY_BYTES
    except OSError:
        return False  # the thread's path reports it


class Delivery:
    """How this worker returns a job's outputs: its bucket (an `OutputStore`, or None)
    and the largest result RunPod takes inline. Built once; no job state."""

    def __init__(
        self,
        store: OutputStore | None,
        max_response_bytes: int,
        job_store: Callable[[JobStorage], OutputStore] | None = None,
    ):
        """`job_store` builds the store of a job that brings its own bucket (blocking)."""
        self.store = store
        self.max_response_bytes = max_response_bytes
        self.job_store = job_store

    @classmethod
    def from_settings(cls, settings: Settings) -> Delivery:
        """With the bucket the settings configure, if any (building one costs ~0.1 s)."""
        job_store = functools.partial(S3Storage.for_job, settings=settings)
        return cls(output_store(settings), settings.max_response_bytes, job_store)

    async def store_for(self, storage: JobStorage | None) -> OutputStore | None:
        """The job's own bucket when it brings one, else the worker's."""
        if storage is None:
            return self.store
        if self.job_store is None:
            raise InvalidJobInput([("input.storage", "this worker cannot use a job's own bucket")])
        return await asyncio.to_thread(self.job_store, storage)

    async def collect(self, history: dict[str, Any], options: OutputOptions, job: JobContext) -> dict[str, Any]:
        """The outputs `history` lists (`PromptRun.outputs`), registered for clean-up and
        delivered within the job's deadline (event-loop time): in the event loop when
        `is_quick`, else in a thread, so that a stalled bucket cannot hold the job past its
        timeout (`JobTimedOut`, `details.stage: "delivery"`). A thread still uploading then
        ends at its next file, which the job's clean-up has removed. The job's bucket
        (`store_for`: its own, else the worker's) takes the files that go by URL."""
        store, job_files, job_id, timeout_s = job.bucket or self.store, job.files, job.job_id, job.timeout_s
        deadline = job.deadline if job.deadline is not None else asyncio.get_running_loop().time() + timeout_s
        files = files_in_history(history, job_files.folders)
        job_files.add_outputs(file.path for file in files if file.created_by_job)
        args = (files, texts_in_history(history), options, store, self.max_response_bytes, job_id, job_files)
        try:
            async with asyncio.timeout_at(deadline):
                await job_files.written(file.path for file in files)  # PNGs still being encoded
                if is_quick(files, options, store):
                    return deliver_outputs(*args)
                return await asyncio.to_thread(deliver_outputs, *args)
        except TimeoutError:
            raise JobTimedOut(
                f"delivering the outputs did not finish within the job's timeout of {timeout_s:g} s: the bucket "
                "did not answer in time (set timeout_s in the job, or check BUCKET_ENDPOINT_URL and "
                "BUCKET_TIMEOUT_S)",
                {"timeout_s": timeout_s, "stage": "delivery"},
            ) from None


def deliver_outputs(
    files: list[OutputFile],
    texts: list[dict[str, str]],
    options: OutputOptions,
    store: OutputStore | None,
    max_response_bytes: int,
    job_id: str,
    job_files: JobFiles,
) -> dict[str, Any]:
    wanted = [f for f in files if f.folder_type == "output" or (options.include_previews and f.folder_type == "temp")]
    if options.format != "png":
        wanted = convert_still_images(wanted, options, job_files)
    upload_to = choose_storage(options, store, wanted, texts, max_response_bytes)
    if upload_to is None:
        entries = [inline_entry(f) for f in wanted]
    else:
        entries = [uploaded_entry(f, upload_to, job_id) for f in wanted]
    result: dict[str, Any] = {"images": []}
    for file, entry in zip(wanted, entries, strict=True):
        result.setdefault(output_list(file.media), []).append(entry)
    if texts:
        result["text"] = texts
    if not wanted and not texts:
        result["hint"] = no_outputs_hint(files)
    return result


def no_outputs_hint(files: list[OutputFile]) -> str:
    """Why a job that succeeded returns no files, and what to change."""
    if any(file.folder_type == "temp" for file in files):
        return (
            'the workflow\'s only images are previews (PreviewImage): add "output": {"include_previews": true} '
            "to the job to get them, or save them with SaveImage"
        )
    return "the workflow saved no files: end it with a node that saves, such as SaveImage or SaveVideo"


def choose_storage(
    options: OutputOptions,
    storage: OutputStore | None,
    files: list[OutputFile],
    texts: list[dict[str, str]],
    limit: int,
) -> OutputStore | None:
    """The bucket to upload to, or None for inline base64 (see rule 3)."""
    if options.storage == "s3" and storage is None:
        raise InvalidJobInput([("input.output.storage", NO_BUCKET_FOR_S3)])
    if options.storage != "base64" and storage is not None:
        return storage
    size = inline_size(files, texts)
    if size <= limit:
        return None
    if storage is not None:
        return storage
    raise OutputTooLarge(
        f"the outputs are {size_text(size)} as base64, over the {size_text(limit)} limit for a RunPod "
        "result (MAX_RESPONSE_BYTES). Configure an S3-compatible bucket (BUCKET_ENDPOINT_URL, "
        "BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY) to get URLs instead, or ask for a lighter "
        'format: "output": {"format": "webp"} or "jpeg"',
        {"size_bytes": size, "limit_bytes": limit},
    )


def size_text(size: int) -> str:
    """A byte count for people: '12.3 MB', '40.5 kB' or '900 bytes'."""
    if size >= 1_000_000:
        return f"{size / 1e6:.1f} MB"
    if size >= 1_000:
        return f"{size / 1e3:.1f} kB"
    return f"{size} bytes"


def inline_size(files: list[OutputFile], texts: list[dict[str, str]]) -> int:
    """Bytes the outputs take in the result as base64, with a generous allowance per entry."""
    size = sum(4 * ((file_size(f) + 2) // 3) + ENTRY_OVERHEAD_BYTES for f in files)
    return size + sum(len(t["text"]) + ENTRY_OVERHEAD_BYTES for t in texts)


def file_size(file: OutputFile) -> int:
    try:
        return file.path.stat().st_size
    except OSError as exc:
        raise unreadable(file, "cannot be read", exc) from exc


def unreadable(file: OutputFile, what: str, exc: Exception) -> OutputUnreadable | DiskFull:
    """The error for an output that cannot be read: where a background saver left why it could
    not write the file, that cause; a full disk named as such."""
    cause = write_failure(file.path) if isinstance(exc, FileNotFoundError) else None
    # A full disk may not even take the note's few bytes: then its free space tells.
    full = cause is not None and (cause.startswith(("ENOSPC", "EDQUOT")) or disk_is_full(file.path.parent))
    if is_disk_full(exc) or full:
        return DiskFull(
            f"output {file.filename} of node {file.node_id} could not be written: the worker's output disk is full",
            {"node_id": file.node_id, "filename": file.filename, "disk": "output"},
        )
    if cause is not None:
        return OutputUnreadable(
            f"output {file.filename} of node {file.node_id} could not be written: {cause}",
            {"node_id": file.node_id, "filename": file.filename},
        )
    return OutputUnreadable(
        f"output {file.filename} of node {file.node_id} {what}: {exc.strerror if isinstance(exc, OSError) else exc}",
        {"node_id": file.node_id, "filename": file.filename},
    )


def disk_is_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < FULL_DISK_FREE_BYTES
    except OSError:
        return False


def convert_still_images(files: list[OutputFile], options: OutputOptions, job_files: JobFiles) -> list[OutputFile]:
    pil_format, suffix, mime_type = FORMATS[options.format]
    converted = []
    for file in files:
        if file.media != "image" or file.animated or file.mime_type == mime_type:
            converted.append(file)
            continue
        try:
            with Image.open(file.path) as image:
                if getattr(image, "is_animated", False):
                    converted.append(file)
                    continue
                target = file.path.with_suffix(suffix)
                job_files.add(target)
                still = image.convert("RGB") if pil_format == "JPEG" else image
                still.save(target, format=pil_format, quality=options.quality)
        except (OSError, UnidentifiedImageError) as exc:
            raise unreadable(file, f"could not be converted to {options.format}", exc) from exc
        converted.append(replace(file, filename=target.name, path=target, mime_type=mime_type))
    return converted


def inline_entry(file: OutputFile) -> dict[str, Any]:
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        raise unreadable(file, "cannot be read", exc) from exc
    return file_entry(file, "base64", base64.b64encode(data).decode("ascii"))


def uploaded_entry(file: OutputFile, store: OutputStore, job_id: str) -> dict[str, Any]:
    return file_entry(
        file, "s3_url", store.put(file.path, stored_name(job_id, file.subfolder, file.filename), file.mime_type)
    )


def file_entry(file: OutputFile, kind: str, data: str) -> dict[str, Any]:
    return {
        "filename": file.filename,
        "type": kind,
        "data": data,
        "node_id": file.node_id,
        "subfolder": file.subfolder,
        "media": file.media,
        "mime_type": file.mime_type,
        "animated": file.animated,
    }
