"""Inputs beyond RunPod's request limit: uploaded to a bucket, sent as presigned URLs.

RunPod refuses a request body over 10 MB on /run and 20 MB on /runsync
(`RUNPOD_REQUEST_LIMITS`; the local endpoint enforces the same). `fit_request(body, path,
bucket)` returns the body as it can be sent: unchanged when it fits; otherwise its
inline inputs (base64 in `input.images[].image`, and base64 or data-URI values in a
named workflow's `input.params`), largest first, are uploaded to the bucket and
replaced by presigned GET URLs until it fits, each move returned (`Moved`: the
file's name, its size, a notice for the log). Without a bucket, or when even that is not enough, it raises
`RequestTooLarge` naming the size and the limit, before anything is sent.

`UploadBucket` is any S3-compatible bucket, read from the same variables as the
worker's (`BUCKET_ENDPOINT_URL`, `BUCKET_ACCESS_KEY_ID`, `BUCKET_SECRET_ACCESS_KEY`,
`BUCKET_NAME`, `BUCKET_REGION`, `BUCKET_PREFIX`) by `UploadBucket.from_env()`.
Uploads go under `<prefix>uploads/<random>/<name>`; their URLs live 24 h (RunPod's
default time a job may wait in the queue).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from .contract import RUNPOD_REQUEST_LIMITS

UPLOAD_URL_EXPIRY_S = 24 * 3600
_DATA_URI = re.compile(r"^data:([^;,]*)[^,]*;base64,", re.IGNORECASE)
# Base64, standard or URL-safe, perhaps wrapped in lines; never spaces (a prompt has them).
_BASE64 = re.compile(r"^[A-Za-z0-9+/=_\-\r\n]+$")
INLINE_MIN_CHARS = 1024  # shorter values are not worth a round trip


class RequestTooLarge(ValueError):
    """The request is over the endpoint's limit and cannot be made to fit."""


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def body_size(body: Any) -> int:
    return len(json.dumps(body).encode())


@dataclass
class UploadBucket:
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str | None = None
    prefix: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> UploadBucket | None:
        """The bucket the BUCKET_* variables describe, or None when BUCKET_ENDPOINT_URL is unset."""
        env = os.environ if env is None else env
        endpoint_url = env.get("BUCKET_ENDPOINT_URL", "")
        if not endpoint_url:
            return None
        missing = [name for name in ("BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY") if not env.get(name)]
        if missing:
            raise ValueError(f"BUCKET_ENDPOINT_URL is set but {' and '.join(missing)} is not")
        # As the worker reads it: without BUCKET_NAME, the first label of the endpoint's host.
        bucket = env.get("BUCKET_NAME") or (urlparse(endpoint_url).hostname or "").split(".")[0]
        return cls(
            endpoint_url=endpoint_url,
            bucket=bucket,
            access_key_id=env["BUCKET_ACCESS_KEY_ID"],
            secret_access_key=env["BUCKET_SECRET_ACCESS_KEY"],
            region=env.get("BUCKET_REGION") or None,
            prefix=env.get("BUCKET_PREFIX", ""),
        )

    def upload(self, content: bytes, name: str) -> str:
        """Put the bytes under a new key; a presigned GET URL for them."""
        try:
            import boto3  # here: only clients that upload need it
        except ImportError:
            raise RequestTooLarge(
                f"{name} must go through the bucket to fit RunPod's limit, which needs boto3 in this Python "
                "(pip install boto3)"
            ) from None

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )
        key = f"{self.prefix}uploads/{uuid.uuid4().hex}/{name}"
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        client.put_object(Bucket=self.bucket, Key=key, Body=content, ContentType=content_type)
        url: str = client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=UPLOAD_URL_EXPIRY_S
        )
        return url


@dataclass(frozen=True)
class Moved:
    """An inline input moved to the bucket so that the request fits."""

    name: str
    size: int  # bytes
    notice: str  # what happened and why, for the log


@dataclass
class InlineInput:
    """One inline input of a job: where it sits, its file name, its decoded bytes."""

    container: dict[str, Any]
    key: str
    name: str
    size: int  # characters in the request

    def content(self) -> bytes:
        return decode_inline(self.container[self.key]) or b""


def decode_inline(value: Any) -> bytes | None:
    """The bytes of a base64 or data-URI string, or None if it is not one."""
    if not isinstance(value, str) or len(value) < INLINE_MIN_CHARS or value.startswith(("http://", "https://")):
        return None
    payload = _DATA_URI.sub("", value, count=1)
    if not _BASE64.match(payload[:4096]):
        return None
    payload = re.sub(r"\s+", "", payload).translate(str.maketrans("-_", "+/"))
    try:
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def inline_inputs(job_input: dict[str, Any]) -> Iterator[InlineInput]:
    for image in job_input.get("images") or []:
        if isinstance(image, dict) and decode_inline(image.get("image")) is not None:
            yield InlineInput(image, "image", str(image.get("name") or "input"), len(image["image"]))
    params = job_input.get("params")
    if not isinstance(params, dict):
        return
    for name, value in params.items():
        if decode_inline(value) is not None:
            mime = _DATA_URI.match(value)
            extension = mimetypes.guess_extension(mime.group(1)) if mime and mime.group(1) else None
            yield InlineInput(params, name, f"{name}{extension or '.bin'}", len(value))


def fit_request(body: dict[str, Any], path: str, bucket: UploadBucket | None) -> tuple[dict[str, Any], list[Moved]]:
    """`body` made to fit `path`'s limit (a copy if changed), and what was moved (see module doc)."""
    limit = RUNPOD_REQUEST_LIMITS[path]
    size = body_size(body)
    if size <= limit:
        return body, []
    over = f"the request is {megabytes(size)}, over RunPod's limit of {megabytes(limit)} for {path}"
    if bucket is None:
        raise RequestTooLarge(
            f"{over}: set a bucket (BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY) so "
            "large inputs are uploaded there and sent as URLs, or send them as URLs yourself"
        )
    body = json.loads(json.dumps(body))  # the caller's dict stays as it was
    moves = []
    for moved in sorted(inline_inputs(body.get("input") or {}), key=lambda found: found.size, reverse=True):
        content = moved.content()
        try:
            moved.container[moved.key] = bucket.upload(content, moved.name)
        except RequestTooLarge:
            raise
        except Exception as exc:  # the bucket's own error (boto3's): refused, unreachable, no such bucket
            raise RequestTooLarge(
                f"{over}, and the upload of {moved.name} to bucket {bucket.bucket} failed: {exc}"
            ) from None
        notice = f"{moved.name} ({megabytes(len(content))}) uploaded to bucket {bucket.bucket}: {over}"
        moves.append(Moved(moved.name, len(content), notice))
        size = body_size(body)
        if size <= limit:
            return body, moves
    raise RequestTooLarge(
        f"the request is still {megabytes(size)} with every inline input moved to the bucket, over RunPod's "
        f"limit of {megabytes(limit)} for {path}: the workflow itself is too large"
    )
