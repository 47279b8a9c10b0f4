"""S3-compatible storage for outputs: upload a file, return a presigned GET URL.

Contract: `S3Storage.from_settings` returns None when no bucket is configured.
`upload` is blocking (boto3): call it in a worker thread. It streams the file from
disk (multipart for large files) and returns a URL valid for BUCKET_URL_EXPIRY_S.
boto3 errors become `StorageError` naming the file and the bucket; the message
never holds credentials (boto3's messages name the error code, not the keys).
One boto3 client is made per worker and reused: making one costs ~100 ms.
"""

from __future__ import annotations

import logging
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StorageError
from .settings import Settings

log = logging.getLogger(__name__)


class S3Storage:
    def __init__(self, settings: Settings):
        self.bucket = settings.bucket_name
        self.prefix = settings.bucket_prefix
        self.url_expiry_s = settings.bucket_url_expiry_s
        self._client = boto3.client(
            "s3",
            endpoint_url=settings.bucket_endpoint_url,
            aws_access_key_id=settings.bucket_access_key_id,
            aws_secret_access_key=settings.bucket_secret_access_key,
            region_name=settings.bucket_region,
            config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage | None:
        return cls(settings) if settings.bucket_configured else None

    def key_for(self, job_id: str, filename: str) -> str:
        return f"{self.prefix}{job_id}/{filename}"

    def upload(self, path: Path, key: str, content_type: str) -> str:
        try:
            self._client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_expiry_s
            )
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise StorageError(
                f"upload of {path.name} to bucket '{self.bucket}' failed: {exc}",
                {"bucket": self.bucket, "key": key},
            ) from None
