"""Downloading a URL for a job, safely: the one owner of fetching from the network.

Contract: `Download(url, max_bytes, headers_for)` fetches in a thread (`run` for the
body, `stream(write)` chunk by chunk); `abort()` from another thread ends a blocked
read at once (after a deadline or a cancel). It follows redirects itself, hop by hop
(at most MAX_REDIRECTS): each hop is checked as the RunPod SDK's `safe_get` checks it
(http(s) only, no proxy, the host's addresses resolved and all public unless
RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS is set, the connection pinned to a checked address
against DNS rebinding), and each gets only its own headers (`headers_for(url)`), so a
credential meant for one host is never sent to the host it redirects to. The body is
capped at `max_bytes`, by Content-Length first and while reading.

Refusals are typed, so callers tell them apart without reading messages: a
`DownloadRefused` (a `SSRFError`, as the SDK's own) is `PrivateAddress` or `TooLarge`,
or plain for a bad scheme, host or redirect. `redact` and `scrub_urls` take query
strings and credentials (often a signature) out of URLs for messages; `refusal` and
`describe` turn an error into words for the job's result.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlparse

import requests

from ..core import runpod_sdk
from ..core.runpod_sdk import SSRFError

CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
CONNECT_READ_TIMEOUT_S = 30
ALLOW_PRIVATE_ENV = "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS"  # the SDK's own switch, with its meaning
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


class DownloadRefused(SSRFError):
    """The URL, a redirect or the body was refused before or while downloading."""


class PrivateAddress(DownloadRefused):
    """The host resolves to an address that is not public."""


class TooLarge(DownloadRefused):
    """The body is larger than the download's cap."""


def private_addresses_allowed() -> bool:
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def origin(url: str) -> str:
    """scheme://host:port of a URL (the port filled in), for comparing endpoints."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{(parsed.hostname or '').lower()}:{port}"


def resolve(host: str, port: int, allow_private: bool = False) -> list[str]:
    """The host's addresses, all public unless private addresses are allowed (for every
    URL by RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS, or for this one by `allow_private`); a host
    with both a public and a private address is refused: it may be rebinding."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DownloadRefused(f"could not resolve host {host!r}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DownloadRefused(f"no addresses resolved for host {host!r}")
    if not (allow_private or private_addresses_allowed()):
        for address in addresses:
            if not runpod_sdk.is_safe_address(address):
                raise PrivateAddress(f"host {host!r} resolves to non-public address {address}")
    return addresses


class Download:
    """One URL fetch, run in a thread; `abort` from another thread ends it."""

    def __init__(
        self,
        url: str,
        max_bytes: int,
        headers_for: Callable[[str], dict[str, str]] | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        private_origin: str | None = None,
    ):
        """`private_origin`: scheme://host:port whose addresses may be private (the worker's
        own bucket, which the operator configured: `OutputStore.private_origin`)."""
        self.url = url
        self.private_origin = private_origin
        self.chunk_bytes = chunk_bytes
        self.max_bytes = max_bytes
        self.headers_for = headers_for or (lambda url: {})
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
                if self.total_bytes > self.max_bytes:
                    raise TooLarge(f"the body is {self.total_bytes} bytes, over the cap of {self.max_bytes}")
                for chunk in self._capped(response):
                    write(chunk)
        finally:
            self._finished = True

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

    def _capped(self, response: requests.Response) -> Iterator[bytes]:
        received = 0
        for chunk in response.iter_content(chunk_size=self.chunk_bytes):
            received += len(chunk)
            if received > self.max_bytes:
                raise TooLarge(f"the body is over the cap of {self.max_bytes} bytes")
            yield chunk

    def _get(self) -> requests.Response:
        """GET, hop by hop through redirects, each hop checked and given its own headers."""
        current = self.url
        for _ in range(MAX_REDIRECTS + 1):
            parsed = urlparse(current)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise DownloadRefused(f"blocked URL: {current}")
            runpod_sdk.refuse_if_proxied(current)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            trusted = self.private_origin is not None and origin(current) == self.private_origin
            addresses = resolve(parsed.hostname, port, allow_private=trusted)
            session, response = runpod_sdk.get_via_first_reachable_ip(
                addresses, current, headers=self.headers_for(current), stream=True, timeout=CONNECT_READ_TIMEOUT_S
            )
            if response.status_code not in runpod_sdk.REDIRECT_STATUS:
                runpod_sdk.bind_session_to_response(response, session)
                return response
            location = response.headers.get("Location")
            response.close()
            runpod_sdk.close_session_quietly(session)
            if not location:
                raise DownloadRefused(f"redirect without Location header: {current}")
            current = urljoin(current, location)
        raise DownloadRefused(f"exceeded maximum redirects ({MAX_REDIRECTS}): {self.url}")


def redact(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}{parsed.path}"


def scrub_urls(text: str) -> str:
    """The text with every URL in it redacted (refusals quote whole URLs)."""
    return _URL.sub(lambda match: redact(match.group(0)), text)


def refusal(exc: SSRFError) -> str:
    """Why a URL was refused, without the URL's secrets, with the way out."""
    hint = f" (set {ALLOW_PRIVATE_ENV}=true to allow private addresses)" if isinstance(exc, PrivateAddress) else ""
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
