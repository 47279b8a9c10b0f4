"""Put the job's input files into ComfyUI's input folder before the prompt runs.

Contract: `upload_inputs` takes each file's bytes (decoded base64, or fetched from
its URL), uploads them through ComfyUI's /upload/image (overwrite on, so a name
always means this job's bytes) and registers the stored path with the job's
`JobFiles` as it goes, so a failure half-way still leaves nothing behind.

URLs are fetched with the RunPod SDK's SSRF-safe `safe_get` (public addresses
only, the address pinned against DNS rebinding, redirects re-checked) unless
RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS is set; the body is streamed with a size cap
(INPUT_MAX_BYTES) and a time limit (INPUT_URL_TIMEOUT_S). A failed fetch is an
`InvalidJobInput` naming the field. URLs are shown without their query string,
which often holds a signature.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse

import requests
from runpod.serverless.utils.rp_ssrf import SSRFError, iter_content_capped, safe_get

from .comfy_api import ComfyAPI
from .errors import InvalidJobInput
from .job_files import JobFiles
from .job_input import InputFile
from .settings import Settings

CHUNK_BYTES = 1024 * 1024


async def upload_inputs(comfy: ComfyAPI, files: list[InputFile], settings: Settings, job_files: JobFiles) -> None:
    input_folder = job_files.folders.input
    for index, file in enumerate(files):
        if isinstance(file.image, bytes):
            data = file.image
        else:
            data = await fetch_input(file.image, f"input.images[{index}].image", settings)
        stored = await comfy.upload_input(file.name, data, file.subfolder)
        job_files.add(job_files.folders.resolve(input_folder, stored.get("subfolder", ""), stored["name"]))


async def fetch_input(url: str, field: str, settings: Settings) -> bytes:
    try:
        return await asyncio.to_thread(download, url, settings.input_max_bytes, settings.input_url_timeout_s)
    except SSRFError as exc:
        private = "non-public" in str(exc)
        hint = " (set RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=true to allow private addresses)" if private else ""
        raise InvalidJobInput([(field, f"download of {redact(url)} refused: {exc}{hint}")]) from None
    except (requests.RequestException, TimeoutError) as exc:
        raise InvalidJobInput([(field, f"download of {redact(url)} failed: {describe(exc)}")]) from None


def download(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """Blocking: run in a thread. Raises SSRFError, requests errors or TimeoutError."""
    deadline = time.monotonic() + timeout_s
    with safe_get(url, stream=True, timeout=min(timeout_s, 30), max_bytes=max_bytes) as response:
        response.raise_for_status()
        body = bytearray()
        for chunk in iter_content_capped(response, CHUNK_BYTES, max_bytes):
            body += chunk
            if time.monotonic() > deadline:
                raise TimeoutError(f"took longer than {timeout_s:g} s (INPUT_URL_TIMEOUT_S)")
        return bytes(body)


def redact(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}{parsed.path}"


def describe(exc: Exception) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    return str(exc) if isinstance(exc, TimeoutError) else type(exc).__name__
