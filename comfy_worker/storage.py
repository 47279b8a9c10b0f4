"""Where outputs go when they do not come back inline: the `OutputStore` interface, and S3.

Contract: `OutputStore.put(path, name, content_type)` stores one file under `name`
(`<job id>/<subfolder>/<file name>`) and returns a URL the client can GET. It is
blocking: `delivery` runs in a worker thread. Failures raise `StorageError`.
`S3Storage` is the implementation for S3-compatible buckets (boto3): it streams
the file from disk (multipart for large files) and returns a presigned GET URL
valid for BUCKET_URL_EXPIRY_S; each request has BUCKET_TIMEOUT_S to connect and to
answer, and two attempts, so a stalled store fails the job in bounded time; boto3
errors become `StorageError` naming the file and the bucket, never the credentials. The worker builds its store once
(`output_store`): making a boto3 client costs ~100 ms. `tests/support/fake_store.py`
is an in-memory store for unit tests.

A job may bring its own bucket (`JobStorage`): `S3Storage.for_job` builds a store for
that job alone, with the worker's timeouts; its endpoint must resolve to public
addresses unless RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS is set (a job must not reach the
worker's private network through it). `presigned_get(reference)` turns an
`s3://bucket/key` input into a short-lived GET URL, fetched like any input URL.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .downloads import refusal, resolve
from .errors import InvalidJobInput, StorageError
from .job_input import JobStorage, s3_parts
from .runpod_sdk import SSRFError
from .settings import Settings

log = logging.getLogger(__name__)
# botocore's DEBUG log prints each request's signed headers (access key ids) and presigned
# URLs: kept at INFO even when the worker logs at DEBUG.
for _name in ("botocore", "boto3", "s3transfer", "urllib3.connectionpool"):
    if logging.getLogger(_name).level < logging.INFO:  # NOTSET (inherit) or DEBUG
        logging.getLogger(_name).setLevel(logging.INFO)


class OutputStore(Protocol):
    def put(self, path: Path, name: str, content_type: str) -> str:
        """Store the file at path as `name`; returns a URL to GET it."""
        ...

    def presigned_get(self, reference: str) -> str:
        """A short-lived GET URL for an `s3://bucket/key` input, with this store's credentials."""
        ...


def output_store(settings: Settings) -> S3Storage | None:
    """The store the settings configure, or None (outputs then come back inline only)."""
    return S3Storage.from_settings(settings) if settings.bucket_configured else None


INPUT_URL_EXPIRY_S = 900  # an s3:// input is fetched at once; its URL need not outlive the job


class S3Storage:
    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        prefix: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str | None,
        url_expiry_s: int,
        timeout_s: float,
    ):
        self.bucket = bucket
        self.prefix = prefix
        self.url_expiry_s = url_expiry_s
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
            config=Config(
                signature_version="s3v4",
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                retries={"total_max_attempts": 2, "mode": "standard"},
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        assert settings.bucket_name is not None, "Settings.from_env derives a bucket name from the endpoint"
        return cls(
            endpoint_url=settings.bucket_endpoint_url,
            bucket=settings.bucket_name,
            prefix=settings.bucket_prefix,
            access_key_id=settings.bucket_access_key_id,
            secret_access_key=settings.bucket_secret_access_key,
            region=settings.bucket_region,
            url_expiry_s=settings.bucket_url_expiry_s,
            timeout_s=settings.bucket_timeout_s,
        )

    @classmethod
    def for_job(cls, storage: JobStorage, settings: Settings) -> S3Storage:
        """The job's own bucket (blocking: resolves its host and builds a client). A
        private endpoint is refused (`InvalidJobInput` on `input.storage.endpoint_url`)."""
        parsed = urlparse(storage.endpoint_url)
        try:
            resolve(parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
        except SSRFError as exc:
            raise InvalidJobInput([("input.storage.endpoint_url", refusal(exc))]) from None
        return cls(
            endpoint_url=storage.endpoint_url,
            bucket=storage.bucket,
            prefix=storage.prefix,
            access_key_id=storage.access_key_id.get_secret_value(),
            secret_access_key=storage.secret_access_key.get_secret_value(),
            region=storage.region,
            url_expiry_s=storage.url_expiry_s or settings.bucket_url_expiry_s,
            timeout_s=settings.bucket_timeout_s,
        )

    def presigned_get(self, reference: str) -> str:
        """A GET URL for an `s3://bucket/key` input, signed with this store's credentials
        (no request is made: a missing object or a wrong key shows when it is fetched)."""
        bucket, key = s3_parts(reference)
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=INPUT_URL_EXPIRY_S
        )
        return url

    def put(self, path: Path, name: str, content_type: str) -> str:
        key = f"{self.prefix}{name}"
        try:
            self._client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})
            url: str = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_expiry_s
            )
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            # boto3 names the local file; the job knows its output by name, not by the worker's path.
            reason = str(exc).replace(str(path), name)
            raise StorageError(
                f"upload of {name} to bucket '{self.bucket}' failed: {reason}",
                {"bucket": self.bucket, "key": key},
            ) from None
        return url
