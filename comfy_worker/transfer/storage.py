"""Where outputs go when they do not come back inline: S3-compatible buckets.

Contract: `OutputStore.put(path, name, content_type)` (the interface, in `core/job.py`) stores one file under `name`
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
worker's private network through it), checked again at every connection and the
connection made to the checked address (`_pin_to_checked_addresses`), so a name that
rebinds after the check reaches nothing else. Its errors say what the user can act on
(the kind of failure and the HTTP status), never the remote service's own text.
`presigned_get(source)` turns an `s3://bucket/key` source into a short-lived GET URL,
fetched like any input URL; the worker's own bucket, configured by the operator, may be
on a private address (`private_origin`: its endpoint, which the download then allows).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import NewConnectionError

from ..core.errors import InvalidJobInput, StorageError
from ..core.settings import Settings
from ..core.sources import BucketObject
from ..request.job_input import JobStorage
from .downloads import DownloadRefused, origin, refusal, resolve

log = logging.getLogger(__name__)
# botocore's DEBUG log prints each request's signed headers (access key ids) and presigned
# URLs: kept at INFO even when the worker logs at DEBUG.
for _name in ("botocore", "boto3", "s3transfer", "urllib3.connectionpool"):
    if logging.getLogger(_name).level < logging.INFO:  # NOTSET (inherit) or DEBUG
        logging.getLogger(_name).setLevel(logging.INFO)


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
        operator_configured: bool = False,
    ):
        self.bucket = bucket
        self.private_origin = origin(endpoint_url) if operator_configured and endpoint_url else None
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
            operator_configured=True,
        )

    @classmethod
    def for_job(cls, storage: JobStorage, settings: Settings) -> S3Storage:
        """The job's own bucket (blocking: resolves its host and builds a client). A
        private endpoint is refused (`InvalidJobInput` on `input.storage.endpoint_url`)."""
        parsed = urlparse(storage.endpoint_url)
        try:
            resolve(parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
        except DownloadRefused as exc:
            raise InvalidJobInput([("input.storage.endpoint_url", refusal(exc))]) from None
        store = cls(
            endpoint_url=storage.endpoint_url,
            bucket=storage.bucket,
            prefix=storage.prefix,
            access_key_id=storage.access_key_id.get_secret_value(),
            secret_access_key=storage.secret_access_key.get_secret_value(),
            region=storage.region,
            url_expiry_s=storage.url_expiry_s or settings.bucket_url_expiry_s,
            timeout_s=settings.bucket_timeout_s,
        )
        _pin_to_checked_addresses(store._client)
        return store

    def presigned_get(self, source: BucketObject) -> str:
        """A GET URL for an `s3://bucket/key` source, signed with this store's credentials
        (no request is made: a missing object or a wrong key shows when it is fetched)."""
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": source.bucket, "Key": source.key}, ExpiresIn=INPUT_URL_EXPIRY_S
        )
        return url

    def put(self, path: Path, name: str, content_type: str) -> str:
        key = f"{self.prefix}{name}"
        try:
            self._client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})
            return self.url_for(name)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise StorageError(
                f"upload of {name} to bucket '{self.bucket}' failed: {bucket_failure(exc)}",
                {"bucket": self.bucket, "key": key},
            ) from None

    def url_for(self, name: str) -> str:
        """A GET URL, valid for `url_expiry_s`, of what is stored as `name` (no request is made)."""
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": f"{self.prefix}{name}"}, ExpiresIn=self.url_expiry_s
        )
        return url

    # Small objects by name (`submits.Shelf`): the records that make a submit happen once.

    @property
    def where(self) -> str:
        return f"bucket '{self.bucket}'"

    def create_object(self, name: str, body: bytes) -> bool:
        """Stores `body` as `name` unless something is stored there already (If-None-Match,
        which AWS S3, R2, MinIO and most S3-compatible services honour); False if it was."""
        try:
            self._object_request("put_object", name, Body=body, IfNoneMatch="*", ContentType="application/json")
        except _Conflict:
            return False
        return True

    def read_object(self, name: str) -> bytes | None:
        answer = self._object_request("get_object", name)
        return None if answer is None else bytes(answer["Body"].read())

    def write_object(self, name: str, body: bytes) -> None:
        self._object_request("put_object", name, Body=body, ContentType="application/json")

    def delete_object(self, name: str) -> None:
        self._object_request("delete_object", name)

    def _object_request(self, operation: str, name: str, **params: Any) -> Any:
        """One request on `<prefix><name>`: its answer, None for a missing object, `_Conflict`
        for a failed condition; any other failure a `StorageError` naming the object."""
        key = f"{self.prefix}{name}"
        try:
            return getattr(self._client, operation)(Bucket=self.bucket, Key=key, **params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404"):
                return None
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise _Conflict from None
            failure = bucket_failure(exc)
        except BotoCoreError as exc:
            failure = bucket_failure(exc)
        raise StorageError(f"{name} in bucket '{self.bucket}': {failure}", {"bucket": self.bucket, "key": key})


class _Conflict(Exception):
    """A conditional request found the object there (or being written)."""


# What the user can do about a refusal, by S3's error code; any other code is named by its
# HTTP status alone (the service's own message is its text, not ours to pass on).
_BUCKET_REFUSALS = {
    "AccessDenied": "access denied: the keys may not write to this bucket",
    "InvalidAccessKeyId": "the access key id is not known to the bucket's service",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "NoSuchBucket": "no such bucket at this endpoint",
    "AuthorizationHeaderMalformed": "the region does not match the bucket's",
    "PermanentRedirect": "the bucket is in another region or at another endpoint",
    "EntityTooLarge": "the file is larger than the bucket accepts",
    "NotImplemented": "the bucket's service does not support this request (submit-once needs If-None-Match writes)",
}


def bucket_failure(exc: BaseException) -> str:
    """A boto3 failure in words the user can act on: no local path, no remote service's text."""
    cause = exc.__context__ if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None else exc
    if isinstance(cause, S3UploadFailedError):
        return "the bucket's service refused the upload"
    if isinstance(cause, ClientError):
        code = str(cause.response.get("Error", {}).get("Code", ""))
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return _BUCKET_REFUSALS.get(code) or f"the bucket's service refused it (HTTP {status or 'error'})"
    if isinstance(cause, DownloadRefused) or isinstance(getattr(cause, "kwargs", {}).get("error"), DownloadRefused):
        return "the bucket's endpoint resolves to a non-public address"
    if isinstance(cause, EndpointConnectionError | ConnectTimeoutError):
        return "could not connect to the bucket's endpoint"
    if isinstance(cause, ReadTimeoutError):
        return "the bucket's endpoint did not answer in time (BUCKET_TIMEOUT_S)"
    return f"{type(cause).__name__} talking to the bucket's endpoint"


class _CheckedConnection:
    """Mixed into botocore's connections for a job's own bucket: each new connection resolves
    its host, refuses a non-public address (`downloads.resolve`) and connects to the address
    it checked, never to a second answer of the resolver (DNS rebinding). TLS still verifies
    the host name: only the address connected to changes."""

    _dns_host: str
    port: int

    def _new_conn(self) -> Any:
        host = self._dns_host
        addresses = resolve(host, self.port)
        try:
            for index, address in enumerate(addresses):
                self._dns_host = address
                try:
                    return super()._new_conn()  # type: ignore[misc]
                except NewConnectionError:
                    if index == len(addresses) - 1:
                        raise
        finally:
            self._dns_host = host


class _CheckedHTTPConnectionPool(AWSHTTPConnectionPool):
    ConnectionCls = type("CheckedHTTPConnection", (_CheckedConnection, AWSHTTPConnection), {})


class _CheckedHTTPSConnectionPool(AWSHTTPSConnectionPool):
    ConnectionCls = type("CheckedHTTPSConnection", (_CheckedConnection, AWSHTTPSConnection), {})


def _pin_to_checked_addresses(client: Any) -> None:
    """Makes a boto3 client's connections `_CheckedConnection`s. botocore offers no public
    hook for its connection classes; its URLLib3Session keeps them in `_pool_classes_by_scheme`
    (botocore 1.x). A botocore without it fails here, at the first job with its own bucket,
    and in the tests, never silently unpinned."""
    session = client._endpoint.http_session
    classes = {"http": _CheckedHTTPConnectionPool, "https": _CheckedHTTPSConnectionPool}
    if not isinstance(getattr(session, "_pool_classes_by_scheme", None), dict):
        raise RuntimeError("this botocore keeps its connection classes elsewhere: cannot pin a job's bucket")
    session._pool_classes_by_scheme = classes
    session._manager.pool_classes_by_scheme = classes
