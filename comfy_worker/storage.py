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
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StorageError
from .settings import Settings

log = logging.getLogger(__name__)


class OutputStore(Protocol):
    def put(self, path: Path, name: str, content_type: str) -> str:
        """Store the file at path as `name`; returns a URL to GET it."""
        ...


def output_store(settings: Settings) -> OutputStore | None:
    """The store the settings configure, or None (outputs then come back inline only)."""
    return S3Storage(settings) if settings.bucket_configured else None


class S3Storage:
    def __init__(self, settings: Settings):
        assert settings.bucket_name is not None, "Settings.from_env derives a bucket name from the endpoint"
        self.bucket = settings.bucket_name
        self.prefix = settings.bucket_prefix
        self.url_expiry_s = settings.bucket_url_expiry_s
        self._client = boto3.client(
            "s3",
            endpoint_url=settings.bucket_endpoint_url,
            aws_access_key_id=settings.bucket_access_key_id,
            aws_secret_access_key=settings.bucket_secret_access_key,
            region_name=settings.bucket_region,
            config=Config(
                signature_version="s3v4",
                connect_timeout=settings.bucket_timeout_s,
                read_timeout=settings.bucket_timeout_s,
                retries={"total_max_attempts": 2, "mode": "standard"},
            ),
        )

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
