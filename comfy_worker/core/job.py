"""What each stage of one job is given: the job's context, and the interface of a bucket.

Contract: the worker makes one `JobContext` per job (`Worker._run_stages`) and hands it to
each stage (fetch the models, place the input files, run the prompt, deliver the
outputs) in place of the loose arguments each took. It holds the job's own state only:
its id, its progress sink (`send`), its clean-up stack (a step pushed there runs when the
job ends, whatever happens), its files, its bucket (the job's own, else the worker's,
else none), its timeout, the deadline its run sets (event-loop time, from the prompt's
start: the run and the delivery share it), and its stage timings. `OutputStore` is what a
bucket does for a job (`transfer/storage.py` implements it for S3-compatible buckets).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .job_files import JobFiles
from .sources import BucketObject
from .timings import StageTimings

Send = Callable[[dict[str, Any]], None]
"""A job's progress sink: takes a progress payload (docs/job-api.md, Progress)."""


class OutputStore(Protocol):
    bucket: str
    """The bucket's name, for messages."""
    private_origin: str | None
    """scheme://host:port of an endpoint the operator configured, whose URLs may resolve to a
    private address; None for a job's own bucket (checked like every URL a job names)."""

    def put(self, path: Path, name: str, content_type: str) -> str:
        """Store the file at path as `name`; returns a URL to GET it."""
        ...

    def url_for(self, name: str) -> str:
        """A fresh URL to GET what `put` stored as `name` (a repeated submit's outputs)."""
        ...

    def presigned_get(self, source: BucketObject) -> str:
        """A short-lived GET URL for an `s3://bucket/key` source, with this store's credentials."""
        ...


def stored_name(job_id: str, subfolder: str, filename: str) -> str:
    """The name an output is stored under in the bucket (the store adds its prefix)."""
    return "/".join(part for part in (job_id, subfolder, filename) if part)


@dataclass
class JobContext:
    job_id: str
    send: Send
    cleanup: contextlib.AsyncExitStack
    files: JobFiles
    timeout_s: float
    bucket: OutputStore | None = None
    deadline: float | None = None
    timings: StageTimings = field(default_factory=StageTimings)
