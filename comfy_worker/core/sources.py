"""Everything a job brings in from elsewhere, parsed once: its input files, a named
workflow's image/video/audio parameters, and the models it names.

A source is one of four values:

    Inline(data)                          base64 (standard or URL-safe) or a data URI, decoded
    WebFile(url)                          http(s)://host/path?query
    BucketObject(bucket, key)             s3://bucket/path/to/key (signed by the job's bucket)
    HubFile(repo_id, filename, revision)  hf://owner/repo/path/in/repo@revision (revision: main)

Contract: `parse_source(value, accepts)` returns the source a job's value names, or raises
ValueError saying what is wrong in words that follow the field's path ("is an s3://
reference without a bucket and a key ..."); `accepts` is the kinds the field takes:
`FILE_SOURCES` for files (`file_source`: input files, media parameters) or `MODEL_SOURCES`
for models (`model_source`). `is_reference` tells a reference from an installed file's
name. Every source says how messages name it (`shown`: no query string, no credentials,
which often hold a signature) and the path its file name ends with (`path`).

No I/O here. Where sources are opened: `transfer/downloads.open_source` (http(s), and s3://
through the bucket's signer), `models/remote_models` (the Hub, through huggingface_hub).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlparse

_DATA_URI = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)  # media type and parameters, e.g. ;charset=utf-8
_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")

WEB_PREFIXES = ("http://", "https://")
S3_PREFIX = "s3://"
HUB_PREFIX = "hf://"
REFERENCE_PREFIXES = (*WEB_PREFIXES, S3_PREFIX, HUB_PREFIX)


@dataclass(frozen=True)
class Inline:
    """A file the job carries itself."""

    data: bytes = field(repr=False)
    shown = "the file given inline"
    path = ""


@dataclass(frozen=True)
class WebFile:
    """A file at an http(s) URL (its query may hold a signature: never shown)."""

    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        return redact(self.url)

    @property
    def path(self) -> str:
        return unquote(urlparse(self.url).path)


@dataclass(frozen=True)
class BucketObject:
    """An object in an S3-compatible bucket, read with the job's bucket credentials."""

    bucket: str
    key: str

    @property
    def shown(self) -> str:
        return f"{S3_PREFIX}{self.bucket}/{self.key}"

    @property
    def path(self) -> str:
        return self.key


@dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face repository, at a revision."""

    repo_id: str
    filename: str
    revision: str = "main"

    @property
    def shown(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}/{self.filename}@{self.revision}"

    @property
    def path(self) -> str:
        return self.filename


Source = Inline | WebFile | BucketObject | HubFile
FileSource = Inline | WebFile | BucketObject
ModelSource = WebFile | BucketObject | HubFile
FILE_SOURCES: tuple[type, ...] = (Inline, WebFile, BucketObject)
MODEL_SOURCES: tuple[type, ...] = (WebFile, BucketObject, HubFile)
_FORMS = {
    Inline: "a base64 string, a data URI",
    WebFile: "an http(s) URL",
    BucketObject: "an s3://bucket/key reference",
    HubFile: "an hf://owner/repo/file reference",
}


def is_reference(value: Any) -> bool:
    """A value that names a file elsewhere (URL, s3://, hf://) rather than an installed file."""
    return isinstance(value, str) and value.startswith(REFERENCE_PREFIXES)


def parse_source(value: Any, accepts: tuple[type, ...]) -> Source:
    """The source `value` names (a source already parsed, or bytes already decoded, pass as
    they are); ValueError saying what is wrong with it, or which forms the field takes."""
    if isinstance(value, Inline | WebFile | BucketObject | HubFile) and isinstance(value, accepts):
        return value
    if isinstance(value, bytes) and value and Inline in accepts:
        return Inline(value)
    kind = _kind(value) if isinstance(value, str) else None
    if kind is None or kind not in accepts:
        forms = [form for kind, form in _FORMS.items() if kind in accepts]
        raise ValueError(f"must be {', '.join(forms[:-1])} or {forms[-1]}")
    if kind is WebFile:
        return WebFile(check_url(value))
    if kind is BucketObject:
        return _bucket_object(value)
    if kind is HubFile:
        return _hub_file(value)
    data = decode_base64(value)
    if not data:
        raise ValueError("is empty")
    return Inline(data)


def file_source(value: Any) -> FileSource:
    """`parse_source` for a file (an input file, a media parameter)."""
    return cast(FileSource, parse_source(value, FILE_SOURCES))  # it returns only what `accepts` holds


def model_source(value: Any) -> ModelSource:
    """`parse_source` for a model."""
    return cast(ModelSource, parse_source(value, MODEL_SOURCES))


def check_url(url: str) -> str:
    """An http(s) URL's form: a host, a valid port, no spaces or control characters."""
    parsed = urlparse(url)
    if not parsed.hostname:
        raise ValueError("is a URL without a host")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise ValueError("is a URL with an invalid port") from None
    if _CONTROL.search(url) or " " in url:
        raise ValueError("is a URL with spaces or control characters")
    return url


def decode_base64(value: str) -> bytes:
    """Standard or URL-safe base64, wrapped or not, padded or not, with or without a data URI."""
    payload = _WHITESPACE.sub("", _DATA_URI.sub("", value, count=1))
    payload = payload.replace("-", "+").replace("_", "/")
    payload += "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64, a base64 data URI or an http(s) URL") from None


def redact(url: str) -> str:
    """A URL without its query string and credentials, for messages and logs."""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}{parsed.path}"


def scrub_urls(text: str) -> str:
    """The text with every URL in it redacted (refusals quote whole URLs)."""
    return _URL.sub(lambda match: redact(match.group(0)), text)


def _kind(value: str) -> type:
    if value.startswith(WEB_PREFIXES):
        return WebFile
    if value.startswith(S3_PREFIX):
        return BucketObject
    if value.startswith(HUB_PREFIX):
        return HubFile
    return Inline


def _bucket_object(reference: str) -> BucketObject:
    bucket, _, key = reference.removeprefix(S3_PREFIX).partition("/")
    if not bucket or not key or _CONTROL.search(reference):
        raise ValueError("is an s3:// reference without a bucket and a key (s3://bucket/path/to/file.png)")
    # An HTTP client removes dot segments from the signed URL's path, so s3://a/../b/x would be
    # signed for bucket a and read from bucket b.
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise ValueError(
            "is an s3:// reference whose key has an empty, '.' or '..' segment (s3://bucket/path/to/file.png)"
        )
    return BucketObject(bucket, key)


def _hub_file(reference: str) -> HubFile:
    path, _, revision = reference.removeprefix(HUB_PREFIX).partition("@")
    parts = path.split("/")
    if len(parts) < 3 or not all(parts) or ".." in parts or _CONTROL.search(reference):
        raise ValueError("is not hf://<owner>/<repo>/<file path>[@revision]")
    return HubFile("/".join(parts[:2]), "/".join(parts[2:]), revision or "main")
