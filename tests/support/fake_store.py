"""In-memory stand-ins for unit tests: an `OutputStore` that keeps each put file's bytes
under its name (and submit records: a `Shelf`), and the client's upload bucket, recording what it would upload."""

from __future__ import annotations

from pathlib import Path

from comfy_worker.core.errors import StorageError
from comfy_worker.core.job import OutputStore
from comfy_worker.core.sources import BucketObject
from comfy_worker.transfer.submits import Shelf
from comfy_worker_client.uploads import UploadBucket


class FakeStore:
    bucket = "fake"
    private_origin: str | None = None

    def __init__(self, fail: bool = False):
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.records: dict[str, bytes] = {}
        self.signed = 0
        self.fail = fail

    def put(self, path: Path, name: str, content_type: str) -> str:
        if self.fail:
            raise StorageError(f"upload of {path.name} to bucket 'fake' failed", {"bucket": "fake", "key": name})
        self.objects[name] = (path.read_bytes(), content_type)
        return f"https://store.invalid/{name}"

    def url_for(self, name: str) -> str:
        self.signed += 1
        return f"https://store.invalid/{name}?signed={self.signed}"

    def presigned_get(self, source: BucketObject) -> str:
        return f"https://store.invalid/get/{source.bucket}/{source.key}"

    # A Shelf too (submit records), in memory.

    where = "bucket 'fake'"

    def create_object(self, name: str, body: bytes) -> bool:
        if name in self.records:
            return False
        self.records[name] = body
        return True

    def read_object(self, name: str) -> bytes | None:
        return self.records.get(name)

    def write_object(self, name: str, body: bytes) -> None:
        self.records[name] = body

    def delete_object(self, name: str) -> None:
        self.records.pop(name, None)


def _matches_the_protocol(fake: FakeStore) -> OutputStore:
    """mypy checks this (pyproject.toml): the fake is still an OutputStore..."""
    return fake


def _keeps_records(fake: FakeStore) -> Shelf:
    """...and a Shelf."""
    return fake


class RecordingBucket(UploadBucket):
    """The client's upload bucket, recording (file name, bytes) instead of uploading."""

    def __init__(self) -> None:
        super().__init__("https://s3.example.com", "uploads", "key-id", "key-secret")
        self.uploaded: list[tuple[str, bytes]] = []

    def upload(self, content: bytes, name: str) -> str:
        self.uploaded.append((name, content))
        return f"https://s3.example.com/uploads/{name}?X-Amz-Signature=abc"
