"""Submit once: the record an idempotency key leaves, so that a submit sent twice runs one job.

A client that sends /run again after a timeout (did the first POST arrive?) creates a
second job. With the same `idempotency_key` in both, the second one does not run:

- The first job of a key claims it: it creates `submits/<SHA-256 of the key>.json`
  only if nothing is stored there (an If-None-Match write in a bucket, a hard link in a
  folder): `{"state": "running", "job_id", "fingerprint", "expires_at"}`.
- When that job completes, its record becomes `{"state": "done", ..., "result"}`, the
  result as returned, inline outputs included. When it fails or is cancelled, the record
  is removed: sending the submit again runs it again.
- A job that finds its key done returns that result, with fresh URLs for the outputs in
  the bucket and `repeat_of` naming the job that ran it. One that finds it running waits
  for it (reading the record every `poll_s`, its progress saying why) up to its own
  timeout, then fails as `SubmitPending` naming the first job. A running record past its
  `expires_at` (its worker died) is taken over.
- A key sent with another input (`JobInput.fingerprint()`) is refused on
  `input.idempotency_key`.

Records are kept where the job's outputs go: the job's own bucket, else the worker's
(BUCKET_*), else SUBMIT_RECORDS_DIR (start.sh puts it on the network volume). With none,
the key is not kept (logged once). A record lives as long as its bucket or folder keeps
it, past RunPod's 30 minutes: `{"result_of": key}` answers from it.

Guarantees: two jobs racing on one key run once where the store honours conditional
creates (AWS S3, Cloudflare R2, MinIO; a folder on one file system). Taking over an
expired record deletes it, then claims: two jobs doing that at the same moment may both
run. A store that ignores If-None-Match runs both. docs/job-api.md says the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from ..core.contract import OUTPUT_LISTS
from ..core.errors import InvalidJobInput, StorageError, SubmitPending, UnknownSubmit, guarded
from ..core.job import JobContext, OutputStore, stored_name
from ..request.job_input import JobInput

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a job waiting on its key's first job reads the record
EXPIRY_MARGIN_S = 120.0  # past its job's timeout, a running record's worker is taken for dead


@runtime_checkable
class Shelf(Protocol):
    """Where records are kept: small objects by name. `S3Storage` is one (a bucket),
    `FolderShelf` another. Blocking; failures raise `StorageError`."""

    @property
    def where(self) -> str:
        """The place, for messages (never a secret or a machine path)."""
        ...

    def create_object(self, name: str, body: bytes) -> bool:
        """Store `body` as `name` unless something is stored there; False if it was."""
        ...

    def read_object(self, name: str) -> bytes | None: ...

    def write_object(self, name: str, body: bytes) -> None: ...

    def delete_object(self, name: str) -> None: ...


class FolderShelf:
    """A folder as a `Shelf` (a network volume's, shared by the endpoint's workers)."""

    where = "the records folder (SUBMIT_RECORDS_DIR)"

    def __init__(self, folder: Path):
        self.folder = folder

    def create_object(self, name: str, body: bytes) -> bool:
        # Written aside, then linked into place: the link fails if the name exists, and a
        # reader never sees a half-written record.
        with self._written_aside(name, body) as aside:
            try:
                os.link(aside, self.folder / name)
            except FileExistsError:
                return False
        return True

    def read_object(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._failed(name, exc) from None

    def write_object(self, name: str, body: bytes) -> None:
        with self._written_aside(name, body) as aside:
            os.replace(aside, self.folder / name)

    def delete_object(self, name: str) -> None:
        try:
            (self.folder / name).unlink(missing_ok=True)
        except OSError as exc:
            raise self._failed(name, exc) from None

    @contextlib.contextmanager
    def _written_aside(self, name: str, body: bytes) -> Any:
        aside = self.folder / f"{name}.{uuid.uuid4().hex[:8]}.part"
        try:
            aside.parent.mkdir(parents=True, exist_ok=True)
            aside.write_bytes(body)
            yield aside
        except OSError as exc:
            raise self._failed(name, exc) from None
        finally:
            with contextlib.suppress(OSError):  # already reported, or never made
                aside.unlink(missing_ok=True)

    def _failed(self, name: str, exc: OSError) -> StorageError:
        return StorageError(f"{name} in {self.where}: {exc.strerror or type(exc).__name__}", {"record": name})


@dataclass(frozen=True)
class SubmitRecord:
    """What a key's record holds (its JSON, `encode`d)."""

    state: Literal["running", "done"]
    job_id: str
    fingerprint: str
    expires_at: float  # wall-clock time after which a running record's worker is taken for dead
    result: dict[str, Any] | None = None

    def encode(self) -> bytes:
        return json.dumps({"version": 1, **asdict(self)}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> SubmitRecord | None:
        """The record, or None when it is not one this worker reads (another version, damaged)."""
        try:
            fields = json.loads(body)
            if fields.pop("version") != 1:
                return None
            return cls(**fields)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def record_name(key: str) -> str:
    """The record's name: the key hashed, so any key makes a safe object name."""
    return f"submits/{hashlib.sha256(key.encode()).hexdigest()}.json"


class HeldKey:
    """A job's hold on its idempotency key: `keep(result)` records what it returned; if the
    job ends without keeping (it failed, was cancelled), its clean-up `release`s the key."""

    def __init__(
        self,
        shelf: Shelf | None = None,
        name: str = "",
        record: SubmitRecord | None = None,
        earlier_result: dict[str, Any] | None = None,
    ):
        self._shelf, self._name, self._record = shelf, name, record
        self.earlier_result = earlier_result  # the key was done before: its result, served again
        self._kept = False

    async def keep(self, result: dict[str, Any]) -> None:
        """Record the job's result under its key. A failure is logged, not raised: the
        job's outputs are made; only a later repeat of the submit would run again."""
        if self._shelf is None or self._record is None:
            return
        done = replace(self._record, state="done", result=result)
        try:
            await asyncio.to_thread(self._shelf.write_object, self._name, done.encode())
            self._kept = True
        except StorageError as error:
            log.warning("job %s: its result is not recorded for its idempotency key: %s", done.job_id, error.message)

    async def release(self) -> None:
        if self._shelf is not None and not self._kept:
            await asyncio.to_thread(self._shelf.delete_object, self._name)


class SubmitRecords:
    """The worker's keeper of idempotency keys. `clock` (wall-clock seconds) and `sleep` are
    injectable, so tests need not wait."""

    def __init__(
        self,
        folder: Path | None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        poll_s: float = POLL_S,
    ):
        self.folder = FolderShelf(folder) if folder is not None else None
        self._clock, self._sleep, self.poll_s = clock, sleep, poll_s
        self._said_not_kept = False

    def shelf_for(self, bucket: OutputStore | None) -> Shelf | None:
        """The job's bucket (its own, else the worker's) if it keeps objects, else the folder."""
        return bucket if isinstance(bucket, Shelf) else self.folder

    async def claim(self, request: JobInput, job: JobContext) -> HeldKey:
        """Claims the job's key, waiting while its first job runs; a `HeldKey` with
        `earlier_result` set when that job is done. Without a key (or a shelf) it holds nothing."""
        key, shelf = request.idempotency_key, self.shelf_for(job.bucket)
        if key is None:
            return HeldKey()
        if shelf is None:
            if not self._said_not_kept:
                log.warning("idempotency keys are not kept: no bucket and no SUBMIT_RECORDS_DIR")
                self._said_not_kept = True
            return HeldKey()
        fingerprint = await asyncio.to_thread(request.fingerprint)  # hashes the whole input: megabytes
        name = record_name(key)
        mine = SubmitRecord("running", job.job_id, fingerprint, self._clock() + job.timeout_s + EXPIRY_MARGIN_S)
        give_up_at = self._clock() + job.timeout_s
        said_waiting = False
        while True:
            if await asyncio.to_thread(shelf.create_object, name, mine.encode()):
                held = HeldKey(shelf, name, mine)
                job.cleanup.push_async_callback(guarded, "release the job's idempotency key", held.release)
                return held
            body = await asyncio.to_thread(shelf.read_object, name)
            earlier = SubmitRecord.decode(body) if body is not None else None
            if earlier is None or earlier.expires_at < self._clock():
                # Released since the claim was tried, unreadable, or left by a worker that died.
                if earlier is not None:
                    log.warning("job %s takes over the key of job %s, which never ended", job.job_id, earlier.job_id)
                if body is not None:
                    await asyncio.to_thread(shelf.delete_object, name)
            elif earlier.fingerprint != fingerprint:
                raise InvalidJobInput(
                    [("input.idempotency_key", f"was sent with another input (job {earlier.job_id}); use a new key")]
                )
            elif earlier.state == "done":
                log.info(
                    "job %s repeats job %s (same idempotency key): its result returned", job.job_id, earlier.job_id
                )
                return HeldKey(earlier_result=await self._served(earlier, job.bucket))
            else:
                if self._clock() >= give_up_at:
                    raise SubmitPending(
                        f"the same submit (idempotency key) still runs as job {earlier.job_id}; its /status will "
                        "have the result",
                        {"job_id": earlier.job_id},
                    )
                if not said_waiting:
                    message = f"the same submit runs as job {earlier.job_id}: waiting for its result"
                    job.send({"status": "waiting", "message": message})
                    said_waiting = True
                await self._sleep(self.poll_s)

    async def look_up(self, key: str, bucket: OutputStore | None) -> dict[str, Any]:
        """A `result_of` job's answer: the result recorded under `key`."""
        shelf = self.shelf_for(bucket)
        if shelf is None:
            raise UnknownSubmit(
                "this worker keeps no records of idempotency keys: it has no bucket and no SUBMIT_RECORDS_DIR"
            )
        body = await asyncio.to_thread(shelf.read_object, record_name(key))
        record = SubmitRecord.decode(body) if body is not None else None
        if record is None:
            raise UnknownSubmit(
                f"no record of a submit with this idempotency key in {shelf.where}: none completed "
                "(a failed one leaves none), or the record was removed"
            )
        if record.state != "done":
            raise SubmitPending(f"the submit still runs as job {record.job_id}", {"job_id": record.job_id})
        return await self._served(record, bucket)

    async def _served(self, record: SubmitRecord, bucket: OutputStore | None) -> dict[str, Any]:
        result = await asyncio.to_thread(with_fresh_urls, record.result or {}, record.job_id, bucket)
        return {**result, "repeat_of": record.job_id}


def with_fresh_urls(result: dict[str, Any], job_id: str, store: OutputStore | None) -> dict[str, Any]:
    """An earlier job's result with a new URL for each output in the bucket (the old ones may
    have expired); inline outputs as they were. Blocking (signing is local, but boto3's)."""
    fresh = dict(result)
    for media in OUTPUT_LISTS.values():
        entries = result.get(media)
        if not isinstance(entries, list) or store is None:
            continue
        fresh[media] = [
            {**entry, "data": store.url_for(stored_name(job_id, entry["subfolder"], entry["filename"]))}
            if entry.get("type") == "s3_url"
            else entry
            for entry in entries
        ]
    return fresh
