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

URLs are fetched with the RunPod SDK's SSRF-safe `safe_get` (public addresses
only, the address pinned against DNS rebinding, redirects re-checked) unless
RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS is set; the body is streamed with a size cap
(INPUT_MAX_BYTES) and a hard deadline (INPUT_URL_TIMEOUT_S): on the deadline or a
cancel the socket is shut down, so a slow drip cannot hold the job. A failed fetch
is an `InvalidJobInput` naming the field. URLs in messages lose their query string
and credentials, which often hold a signature.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlparse

import requests
from runpod.serverless.utils import rp_ssrf
from runpod.serverless.utils.rp_ssrf import SSRFError, iter_content_capped, safe_get

from .errors import InvalidJobInput
from .job_files import JobFiles
from .job_input import InputFile
from .settings import Settings

CHUNK_BYTES = 64 * 1024
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


async def place_inputs(files: list[InputFile], settings: Settings, job_files: JobFiles) -> dict[str, str]:
    """Write the job's input files; returns {reference: new reference} for names that were taken."""
    renames: dict[str, str] = {}
    own_folder = f"_job-{uuid.uuid4().hex[:12]}"
    for index, file in enumerate(files):
        if isinstance(file.image, bytes):
            data = file.image
        else:
            data = await fetch_input(file.image, file.field(index), settings)
        reference = "/".join(part for part in (file.subfolder, file.name) if part)
        placed = await asyncio.to_thread(write_input, job_files, reference, data, own_folder)
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


async def fetch_input(url: str, field: str, settings: Settings) -> bytes:
    download = Download(url, settings.input_max_bytes)
    try:
        async with asyncio.timeout(settings.input_url_timeout_s):
            return await asyncio.to_thread(download.run)
    except TimeoutError:
        limit = f"{settings.input_url_timeout_s:g} s (INPUT_URL_TIMEOUT_S)"
        raise InvalidJobInput([(field, f"download of {redact(url)} took longer than {limit}")]) from None
    except SSRFError as exc:
        raise InvalidJobInput([(field, f"download of {redact(url)} {refusal(exc)}")]) from None
    except (requests.RequestException, ValueError, OSError) as exc:
        raise InvalidJobInput([(field, f"download of {redact(url)} failed: {describe(exc)}")]) from None
    finally:
        download.abort()  # after a deadline or a cancel: end the thread's blocked read now


class Download:
    """One URL fetch, run in a thread; `abort` from another thread ends it.

    `headers_for(url)` gives the headers for each request, redirects included, so a
    credential meant for one host is never sent to the host it redirects to."""

    def __init__(
        self,
        url: str,
        max_bytes: int,
        headers_for: Callable[[str], dict[str, str]] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ):
        self.url = url
        self.chunk_bytes = chunk_bytes
        self.max_bytes = max_bytes
        self.headers_for = headers_for
        self.total_bytes = 0  # from Content-Length, once known (0: unknown)
        self._response: requests.Response | None = None
        self._aborted = False
        self._finished = False

    def run(self) -> bytes:
        body = bytearray()
        self.stream(body.extend)
        return bytes(body)

    def stream(self, write: Callable[[bytes], Any]) -> None:
        """Pass the body to `write`, chunk by chunk, within the size cap."""
        try:
            with self._get() as response:
                self._response = response
                if self._aborted:
                    raise TimeoutError("aborted")
                response.raise_for_status()
                self.total_bytes = int(response.headers.get("Content-Length") or 0)
                for chunk in iter_content_capped(response, self.chunk_bytes, self.max_bytes):
                    write(chunk)
        finally:
            self._finished = True

    def _get(self) -> requests.Response:
        if self.headers_for is None:
            return safe_get(self.url, stream=True, timeout=30, max_bytes=self.max_bytes)
        return _safe_get_with_host_headers(self.url, self.headers_for, self.max_bytes)

    def abort(self) -> None:
        """End a download still running (its thread is blocked in a read); no-op after it ended."""
        self._aborted = True
        raw: Any = self._response.raw if self._response is not None else None
        if self._finished or raw is None or not hasattr(raw, "shutdown"):  # urllib3 >= 2.3 has shutdown
            return
        try:
            raw.shutdown()
        except (OSError, ValueError, RuntimeError):  # closed or released meanwhile: it has ended anyway
            pass


def _safe_get_with_host_headers(
    url: str, headers_for: Callable[[str], dict[str, str]], max_bytes: int, max_redirects: int = 5
) -> requests.Response:
    """`safe_get`, hop by hop, with each hop's own headers. The SDK's `safe_get` sends the
    same headers to every hop; this uses its own validated building blocks (pinned SDK
    version: tests/unit/test_input_files.py checks they are there) so that each
    redirect is checked exactly as there, and a credential stays with its host."""
    current = url
    for _ in range(max_redirects + 1):
        parsed = urlparse(current)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SSRFError(f"blocked URL: {current}")
        rp_ssrf._refuse_if_proxied(current)
        ips = rp_ssrf.resolve_and_validate(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))
        session, response = rp_ssrf._get_via_first_reachable_ip(
            ips, current, headers=headers_for(current), stream=True, timeout=30
        )
        if response.status_code in rp_ssrf._REDIRECT_STATUS:
            location = response.headers.get("Location")
            response.close()
            rp_ssrf._close_session_quietly(session)
            if not location:
                raise SSRFError(f"redirect without Location header: {current}")
            current = urljoin(current, location)
            continue
        rp_ssrf._bind_session_to_response(response, session)
        rp_ssrf._enforce_content_length(response, max_bytes)
        return response
    raise SSRFError(f"exceeded maximum redirects ({max_redirects}): {url}")


def redact(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}{parsed.path}"


def scrub_urls(text: str) -> str:
    """The text with every URL in it redacted (the SDK's messages quote whole URLs)."""
    return _URL.sub(lambda match: redact(match.group(0)), text)


def refusal(exc: SSRFError) -> str:
    """Why the SDK's guard refused a URL, without the URL's secrets, with the way out."""
    private = "non-public" in str(exc)
    hint = " (set RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=true to allow private addresses)" if private else ""
    return f"refused: {scrub_urls(str(exc))}{hint}"


def describe(exc: BaseException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, requests.exceptions.InvalidSchema | requests.exceptions.MissingSchema):
        return "redirected to something that is not an http(s) URL"
    if isinstance(exc, requests.exceptions.InvalidURL | ValueError):
        return "invalid URL (a redirect may point to a bad host or port)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError | OSError):
        return "could not connect, or the connection broke"
    return type(exc).__name__
