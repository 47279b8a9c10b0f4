"""Downloading a URL for a job, safely: the one owner of fetching from the network.

Contract: `open_source(source, max_bytes, bucket)` is how a job's http(s) or s3:// source
(`core/sources.py`) is fetched: a `Download` of its URL, or of the URL the job's bucket
signs for an s3:// object (`NoBucket` when there is none). `Download(url, max_bytes,
headers_for)` fetches in a thread (`run` for the body, `stream(write)` chunk by chunk);
`abort()` from another thread ends a blocked read at once (after a deadline or a cancel).
It follows redirects itself, hop by hop (at most MAX_REDIRECTS), and checks each hop:
http(s) only, no proxy, the host's addresses resolved and all public (`is_public_address`)
unless RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS is set, the connection pinned to a checked
address against DNS rebinding (the RunPod SDK's pinned session does the connecting); each
hop gets only its own headers (`headers_for(url)`), so a credential meant for one host is
never sent to the host it redirects to. The body is capped at `max_bytes`, by
Content-Length first and while reading.

Refusals are this package's own and typed, so callers tell them apart without reading
messages: a `DownloadRefused` is `PrivateAddress` or `TooLarge`, or plain for a bad scheme,
host, proxy or redirect. `refusal` and `describe` turn an error into words for the job's
result, without the URL's secrets (`core.sources.scrub_urls`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlparse

import requests
from requests.utils import get_environ_proxies, select_proxy

from ..core import runpod_sdk
from ..core.job import OutputStore
from ..core.sources import BucketObject, WebFile, scrub_urls

CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 5
CONNECT_READ_TIMEOUT_S = 30
ALLOW_PRIVATE_ENV = "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS"  # the SDK's own switch, with its meaning
# Not global, though Python's ipaddress calls it neither private nor reserved: carrier-grade NAT.
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


class DownloadRefused(Exception):
    """The URL, a redirect or the body was refused before or while downloading."""


class PrivateAddress(DownloadRefused):
    """The host resolves to an address that is not public."""


class TooLarge(DownloadRefused):
    """The body is larger than the download's cap."""


class NoBucket(Exception):
    """An s3:// source, and no bucket to sign it with."""


def private_addresses_allowed() -> bool:
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def origin(url: str) -> str:
    """scheme://host:port of a URL (the port filled in), for comparing endpoints."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{(parsed.hostname or '').lower()}:{port}"


def is_public_address(address: str) -> bool:
    """A globally routable unicast address: not loopback, link-local (the cloud metadata
    service's 169.254.169.254 included), private, shared (CGNAT), reserved, multicast or
    unspecified, nor an IPv4-mapped IPv6 form of one. Anything unparseable is not public."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    if isinstance(parsed, ipaddress.IPv4Address) and parsed in _SHARED_ADDRESS_SPACE:
        return False
    flags = (parsed.is_private, parsed.is_loopback, parsed.is_link_local, parsed.is_reserved, parsed.is_multicast)
    return parsed.is_global and not any(flags) and not parsed.is_unspecified


def refuse_if_proxied(url: str) -> None:
    """A proxy would resolve the host itself, so the checked address would not be the one
    connected to: refused, unless private addresses are allowed anyway (NO_PROXY honoured)."""
    if private_addresses_allowed():
        return
    if select_proxy(url, get_environ_proxies(url)):
        raise DownloadRefused(
            f"refusing to fetch {url} through a proxy: the address it connects to cannot be checked "
            f"(exclude the host with NO_PROXY, or set {ALLOW_PRIVATE_ENV}=true)"
        )


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
            if not is_public_address(address):
                raise PrivateAddress(f"host {host!r} resolves to non-public address {address}")
    return addresses


def open_source(
    source: WebFile | BucketObject,
    max_bytes: int,
    bucket: OutputStore | None,
    headers_for: Callable[[str], dict[str, str]] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Download:
    """The download of a job's http(s) or s3:// source; an s3:// object is read through a
    short-lived URL its bucket signs (the job's own bucket, else the worker's: `NoBucket`
    when neither), which may be on the private network the operator configured."""
    if isinstance(source, WebFile):
        return Download(source.url, max_bytes, headers_for, chunk_bytes)
    if bucket is None:
        raise NoBucket(source.shown)
    signed = bucket.presigned_get(source)
    return Download(signed, max_bytes, headers_for, chunk_bytes, bucket.private_origin)


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
            refuse_if_proxied(current)
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


def refusal(exc: DownloadRefused) -> str:
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
