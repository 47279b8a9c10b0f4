"""Put the job's input files into ComfyUI's input folder before the prompt runs.

Contract: `place_inputs` takes each file's bytes (decoded base64, or fetched from
its URL) and writes it to `input/<subfolder>/<name>`, exactly under that name (no
HTTP upload: the worker shares ComfyUI's folders, as it does for outputs, so names
stay verbatim and size is limited only by INPUT_MAX_BYTES). A job never replaces
or removes what it did not create: when the name is taken (a file baked into the
image, on a volume, or left by someone else) the job's file goes to a folder of
its own, `input/_job-<id>/...`, and the returned renames tell the worker which
workflow references to point there. Every file and folder the job creates is
registered with its `JobFiles` as it goes, so a failure half-way leaves nothing.

Each file's source was parsed with the job (`core/sources.py`); `read_source` reads it.
An `s3://bucket/key` file is read through a short-lived presigned URL, signed with the
job's own bucket credentials (`storage`) or else the worker's, and then fetched as any
URL is (`downloads.open_source`). URLs are fetched SSRF-safe (public addresses only unless
RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS is set, redirects re-checked) with a size cap
(INPUT_MAX_BYTES) and a hard deadline (INPUT_URL_TIMEOUT_S): on the deadline or a
cancel the socket is shut down, so a slow drip cannot hold the job. A failed fetch
is an `InvalidJobInput` naming the field. URLs in messages lose their query string
and credentials, which often hold a signature.
"""

from __future__ import annotations

import asyncio
import uuid

import requests

from ..core.errors import DiskFull, InvalidJobInput, is_disk_full
from ..core.job import JobContext, OutputStore
from ..core.job_files import JobFiles
from ..core.settings import Settings
from ..core.sources import FileSource, Inline
from ..request.job_input import InputFile
from .downloads import DownloadRefused, NoBucket, TooLarge, describe, open_source, refusal

NO_BUCKET_FOR_S3_INPUT = (
    "is an s3:// reference, but the job has no 'storage' and this endpoint no bucket (BUCKET_ENDPOINT_URL) "
    "to read it with"
)


async def place_inputs(files: list[InputFile], settings: Settings, job: JobContext) -> dict[str, str]:
    """Write the job's input files; returns {reference: new reference} for names that were taken.
    The job's bucket signs its s3:// sources (the job's own bucket, else the worker's)."""
    renames: dict[str, str] = {}
    own_folder = f"_job-{uuid.uuid4().hex[:12]}"
    for index, file in enumerate(files):
        data = await read_source(file.image, file.field(index), settings, job.bucket)
        reference = "/".join(part for part in (file.subfolder, file.name) if part)
        try:
            placed = await asyncio.to_thread(write_input, job.files, reference, data, own_folder)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise DiskFull(
                f"{file.field(index)}: {reference} could not be written: the worker's input disk is full "
                f"({len(data)} bytes needed)",
                {"field": file.field(index), "disk": "input"},
            ) from None
        if placed != reference:
            renames[reference] = placed
    return renames


def write_input(job_files: JobFiles, reference: str, data: bytes, own_folder: str) -> str:
    """Blocking: write data at input/<reference>, or under own_folder if that name is taken.
    Returns the reference the workflow must use."""
    for candidate in (reference, f"{own_folder}/{reference}"):
        target = job_files.folders.resolve(job_files.folders.input, "", candidate)
        job_files.make_folders(target.parent)
        try:
            with open(target, "xb") as out:  # never replace a file the job did not create
                job_files.add(target)
                out.write(data)
            return candidate
        except FileExistsError:
            continue
    raise InvalidJobInput([("input.images", f"{reference} exists twice in the job's own folder")])


async def read_source(source: FileSource, field: str, settings: Settings, bucket: OutputStore | None) -> bytes:
    """The file's bytes: given inline, or downloaded within INPUT_MAX_BYTES and
    INPUT_URL_TIMEOUT_S; a failure is an `InvalidJobInput` on `field` naming the source
    without its secrets."""
    if isinstance(source, Inline):
        return source.data
    try:
        download = open_source(source, settings.input_max_bytes, bucket)
    except NoBucket:
        raise InvalidJobInput([(field, NO_BUCKET_FOR_S3_INPUT)]) from None
    try:
        async with asyncio.timeout(settings.input_url_timeout_s):
            return await asyncio.to_thread(download.run)
    except TimeoutError:
        limit = f"{settings.input_url_timeout_s:g} s (INPUT_URL_TIMEOUT_S)"
        raise InvalidJobInput([(field, f"download of {source.shown} took longer than {limit}")]) from None
    except TooLarge:
        limit = f"{settings.input_max_bytes} bytes (INPUT_MAX_BYTES)"
        raise InvalidJobInput([(field, f"download of {source.shown} is larger than {limit}")]) from None
    except DownloadRefused as exc:
        raise InvalidJobInput([(field, f"download of {source.shown} {refusal(exc)}")]) from None
    except (requests.RequestException, ValueError, OSError) as exc:
        raise InvalidJobInput([(field, f"download of {source.shown} failed: {describe(exc)}")]) from None
    finally:
        download.abort()  # after a deadline or a cancel: end the thread's blocked read now
