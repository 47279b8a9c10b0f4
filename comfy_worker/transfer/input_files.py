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

An `s3://bucket/key` file is read through a short-lived presigned URL, signed with the
job's own bucket credentials (`storage`) or else the worker's, and then fetched as any
URL is. URLs are fetched with `downloads.Download` (SSRF-safe: public addresses only unless
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
from ..core.job import JobContext
from ..core.job_files import JobFiles
from ..core.runpod_sdk import SSRFError
from ..core.settings import Settings
from ..request.job_input import InputFile
from .downloads import Download, TooLarge, describe, redact, refusal

NO_BUCKET_FOR_S3_INPUT = (
    "is an s3:// reference, but the job has no 'storage' and this endpoint no bucket (BUCKET_ENDPOINT_URL) "
    "to read it with"
)


async def place_inputs(files: list[InputFile], settings: Settings, job: JobContext) -> dict[str, str]:
    """Write the job's input files; returns {reference: new reference} for names that were taken.
    `bucket` signs the job's s3:// references (the job's own bucket, else the worker's)."""
    job_files, bucket = job.files, job.bucket
    renames: dict[str, str] = {}
    own_folder = f"_job-{uuid.uuid4().hex[:12]}"
    for index, file in enumerate(files):
        if isinstance(file.image, bytes):
            data = file.image
        elif file.image.startswith("s3://"):
            if bucket is None:
                raise InvalidJobInput([(file.field(index), NO_BUCKET_FOR_S3_INPUT)])
            signed = bucket.presigned_get(file.image)
            data = await fetch_input(signed, file.field(index), settings, file.image, bucket.private_origin)
        else:
            data = await fetch_input(file.image, file.field(index), settings)
        reference = "/".join(part for part in (file.subfolder, file.name) if part)
        try:
            placed = await asyncio.to_thread(write_input, job_files, reference, data, own_folder)
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


async def fetch_input(
    url: str, field: str, settings: Settings, shown_as: str | None = None, private_origin: str | None = None
) -> bytes:
    """`shown_as`: how messages name the file (an s3:// reference rather than its signed URL);
    `private_origin`: the worker's own bucket's endpoint, which may be private."""
    download = Download(url, settings.input_max_bytes, private_origin=private_origin)
    if shown_as is not None:
        url = shown_as
    try:
        async with asyncio.timeout(settings.input_url_timeout_s):
            return await asyncio.to_thread(download.run)
    except TimeoutError:
        limit = f"{settings.input_url_timeout_s:g} s (INPUT_URL_TIMEOUT_S)"
        raise InvalidJobInput([(field, f"download of {redact(url)} took longer than {limit}")]) from None
    except TooLarge:
        limit = f"{settings.input_max_bytes} bytes (INPUT_MAX_BYTES)"
        raise InvalidJobInput([(field, f"download of {redact(url)} is larger than {limit}")]) from None
    except SSRFError as exc:
        raise InvalidJobInput([(field, f"download of {redact(url)} {refusal(exc)}")]) from None
    except (requests.RequestException, ValueError, OSError) as exc:
        raise InvalidJobInput([(field, f"download of {redact(url)} failed: {describe(exc)}")]) from None
    finally:
        download.abort()  # after a deadline or a cancel: end the thread's blocked read now
