"""Models named by URL, Hugging Face or S3 reference in a job's workflow, fetched once into the cache.

In any list input that picks a model file (`installed.loader_inputs`: checkpoints,
LoRAs, VAEs, UNETs, CLIP, ControlNets, upscalers, embeddings, custom loaders), a
job may write instead of a file name:

    https://host/path/style.safetensors                 (http:// too, as for input files)
    hf://owner/repo/path/in/repo/file.safetensors@revision   (revision optional: main)
    s3://bucket/path/to/file.safetensors                 (read with the job's `storage`
                                                          keys, else the worker's bucket's)

optionally ending in `#sha256=<64 hex digits>` (the file's hash, checked after the
download; it also lets a signed URL, whose query changes, find its cached file).

Contract: `find_remote_models(workflow, model_inputs, allow_pickle)` returns each
such input with its reference parsed once (`parse_reference`: a `core/sources.py`
source and the hash), or `InvalidJobInput` naming node, input and what is wrong (a
malformed reference, an extension that is not allowed). A URL in an input that does not pick
a model file (a prompt, a URL-loading custom node's input) is left alone. `ModelFetcher.fetch`
returns the cached file for a source, downloading it (in a thread, under the
cache's per-source lock, within MODEL_DOWNLOAD_MAX_GB and MODEL_DOWNLOAD_TIMEOUT_S)
when no worker has yet: URLs SSRF-safe (`downloads.open_source`: public addresses only,
redirects re-checked), Hugging Face through huggingface_hub (HF_ENDPOINT, HF_TOKEN
or the job's token), S3 through a short-lived presigned URL, as a URL. A failure is
a `ModelDownloadFailed` naming node, input, source (redacted) and reason. Only
safetensors (header checked) and GGUF files are accepted, unless ALLOW_PICKLE_MODELS
allows pickled formats.

Per-job credentials (`model_credentials`) are used only for their host: a Hugging
Face token only for the Hub, a header only for requests to its host (redirects to
another host go without it). They are secrets: never logged, never returned.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import requests

from ..core.errors import InvalidJobInput, ModelDownloadFailed, is_disk_full
from ..core.job import JobContext, OutputStore
from ..core.settings import Settings
from ..core.sources import BucketObject, HubFile, ModelSource, WebFile, is_reference, model_source
from ..progress.progress import Change, ProgressRelay
from ..request.job_input import ModelCredentials
from ..request.workflow import Workflow
from ..transfer.downloads import DownloadRefused, NoBucket, TooLarge, describe, open_source, refusal
from .model_cache import CachedModel, CorruptModel, Hold, ModelCache, check_model_file, hash_file

NO_BUCKET_FOR_S3_MODEL = (
    "is an s3:// model reference, but the job has no 'storage' and this endpoint no bucket (BUCKET_ENDPOINT_URL) "
    "to read it with"
)

SAFE_EXTENSIONS = (".safetensors", ".sft", ".gguf")
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2")
MODEL_CHUNK_BYTES = 1024 * 1024
REPORT_EVERY_S = 0.2
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"[^A-Za-z0-9._+-]")

Progress = Callable[[str, float | None], None]
"""(message, fraction done or None) for the job's progress."""


@dataclass(frozen=True)
class ModelReference:
    """A model a job names: where it is (`core/sources.py`) and, if given, its sha256."""

    source: ModelSource
    sha256: str | None = None

    @property
    def name(self) -> str:
        """A safe file name for the cache, from the URL's, the key's or the repository's path."""
        return _NAME.sub("_", PurePosixPath(self.source.path).name)[-120:] or "model"

    @property
    def key(self) -> str:
        """Names the source in the cache (a URL with its query: two queries may be two files)."""
        text = self.source.url if isinstance(self.source, WebFile) else self.source.shown
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def shown(self) -> str:
        """For messages and logs: no query string, no credentials."""
        return self.source.shown


def parse_reference(value: str, allow_pickle: bool) -> ModelReference:
    """A model reference, or ValueError saying what is wrong with it."""
    where, _, digest = value.partition("#sha256=")
    if "#" in where:
        raise ValueError("has a '#' part that is not '#sha256=<64 hex digits>'")
    if digest and not _SHA256.match(digest.lower()):
        raise ValueError("has a '#sha256=' that is not 64 hex digits")
    reference = ModelReference(model_source(where), digest.lower() or None)
    suffix = PurePosixPath(reference.name).suffix.lower()
    if suffix in PICKLE_EXTENSIONS and not allow_pickle:
        raise ValueError(
            f"names a {suffix} file: pickled model formats can run code when loaded and are refused "
            "(use .safetensors, or set ALLOW_PICKLE_MODELS=true)"
        )
    if suffix not in SAFE_EXTENSIONS + PICKLE_EXTENSIONS:
        raise ValueError(f"does not name a model file (.safetensors, .sft or .gguf), but '{reference.name}'")
    return reference


@dataclass(frozen=True)
class RemoteModel:
    node_id: str
    input: str
    folder: str
    reference: ModelReference

    def where(self, workflow: Workflow) -> str:
        return f"node {self.node_id} '{workflow.display_name(self.node_id)}' input '{self.input}'"


def find_remote_models(workflow: Workflow, model_inputs: Mapping[str, str], allow_pickle: bool) -> list[RemoteModel]:
    """Every input that names a model by URL or hf:// reference; `model_inputs` maps
    "<class>.<input>" to its model folder."""
    found, problems = [], []
    for node_id in workflow:
        class_type = workflow.class_type(node_id)
        for name, value in workflow.inputs(node_id).items():
            if not is_reference(value):
                continue
            field = f"input.workflow.{node_id}.inputs.{name}"
            folder = model_inputs.get(f"{class_type}.{name}")
            if folder is None:
                continue  # not a model input: a prompt or a URL-loading node's own input, left as it is
            try:
                found.append(RemoteModel(node_id, name, folder, parse_reference(value, allow_pickle)))
            except ValueError as exc:
                problems.append((field, f"({workflow.display_name(node_id)}) {exc}"))
    if problems:
        raise InvalidJobInput(problems)
    return found


class ModelFetcher:
    def __init__(self, settings: Settings, cache: ModelCache | None = None):
        """`cache` defaults to the one in MODEL_CACHE_DIR."""
        self.settings = settings
        self.cache = cache if cache is not None else ModelCache(settings.model_cache_dir)

    async def fetch(
        self, model: RemoteModel, workflow: Workflow, credentials: Credentials, progress: Progress
    ) -> tuple[CachedModel, Hold]:
        """The cached file for the model's source, downloaded first if no worker has it, and
        held (eviction leaves it until the hold is released)."""
        abort = threading.Event()
        limit = self.settings.model_download_timeout_s
        try:
            async with asyncio.timeout(limit):
                return await asyncio.to_thread(self._fetch, model.reference, model.folder, credentials, abort, progress)
        except TimeoutError:
            reason = f"took longer than {limit:g} s (MODEL_DOWNLOAD_TIMEOUT_S)"
            raise self._failed(model, workflow, reason) from None
        except _FetchError as error:
            raise self._failed(model, workflow, str(error)) from None
        finally:
            abort.set()  # a download still running (after a cancel or the deadline) stops now

    async def fetch_all(
        self,
        workflow: Workflow,
        model_inputs: Callable[[], Awaitable[Mapping[str, str]]],
        given: ModelCredentials,
        job: JobContext,
    ) -> Workflow:
        """The workflow with every model it names by URL, hf:// or s3:// fetched (from the
        cache, or downloaded into it) and its input pointed at the cached file. The job's
        bucket signs s3:// references. Progress goes to the job's `send` ("downloading
        <name>: 40%", throttled); each file stays held until the job's clean-up, so
        eviction cannot take it meanwhile."""
        send, cleanup, bucket = job.send, job.cleanup, job.bucket
        if not any(is_reference(value) for node_id in workflow for value in workflow.inputs(node_id).values()):
            return workflow
        models = find_remote_models(workflow, await model_inputs(), self.settings.allow_pickle_models)
        unsigned = [model for model in models if isinstance(model.reference.source, BucketObject) and bucket is None]
        if unsigned:
            raise InvalidJobInput(
                [(f"input.workflow.{model.node_id}.inputs.{model.input}", NO_BUCKET_FOR_S3_MODEL) for model in unsigned]
            )
        credentials = Credentials.from_job(given, bucket)
        loop = asyncio.get_running_loop()
        relay = ProgressRelay(send, self.settings.progress_updates_per_s)
        changes = {}
        done = False

        def offer(payload: dict[str, Any]) -> None:
            if not done:  # a download thread still running after a cancel reports no more
                relay.offer(payload, Change.ROUTINE)

        try:
            for model in models:

                def report(message: str, fraction: float | None, model: RemoteModel = model) -> None:
                    payload = {"status": "downloading", "message": message, "node_id": model.node_id, "progress": 0.0}
                    if fraction is not None:
                        payload["download_progress"] = round(fraction, 4)
                    loop.call_soon_threadsafe(offer, payload)  # called from the download thread

                cached, hold = await self.fetch(model, workflow, credentials, report)
                cleanup.callback(hold.release)
                changes[(model.node_id, model.input)] = cached.name
        finally:
            done = True
            relay.close()
        return workflow.with_inputs(changes)

    @staticmethod
    def _failed(model: RemoteModel, workflow: Workflow, reason: str) -> ModelDownloadFailed:
        return ModelDownloadFailed(
            f"{model.where(workflow)}: could not fetch {model.reference.shown}: {reason}",
            {"node_id": model.node_id, "input": model.input, "source": model.reference.shown, "reason": reason},
        )

    # -- in a thread ----------------------------------------------------------------

    def _fetch(
        self,
        reference: ModelReference,
        folder: str,
        credentials: Credentials,
        abort: threading.Event,
        progress: Progress,
    ) -> tuple[CachedModel, Hold]:
        """The file, held before this job's own eviction runs; fetched again if another job's
        eviction took it between its lookup (or download) and the hold."""
        for _ in range(HOLD_ATTEMPTS):
            cached = self._fetch_once(reference, folder, credentials, abort, progress)
            hold = self.cache.hold(cached)
            if hold is not None:
                self.cache.evict(self.settings.model_cache_max_bytes, keep=cached.path)
                return cached, hold
            log.info("model %s was evicted by another job before this one held it; fetching it again", reference.name)
        raise _FetchError(
            f"evicted by other jobs' downloads {HOLD_ATTEMPTS} times before it could be used: "
            "MODEL_CACHE_MAX_GB is too small for the models jobs use at once"
        )

    def _fetch_once(
        self,
        reference: ModelReference,
        folder: str,
        credentials: Credentials,
        abort: threading.Event,
        progress: Progress,
    ) -> CachedModel:
        def waiting() -> None:
            progress(f"waiting for another worker's download of {reference.name}", None)

        with self.cache.download_lock(reference.key, abort.is_set, waiting):
            cached = self.cache.lookup(reference.key, reference.sha256)
            if cached is not None:
                return cached
            partial = self.cache.partial_path(reference.name)
            try:
                source = reference.source
                if isinstance(source, HubFile):
                    self._from_hub(source, reference.name, partial, credentials, abort, progress)
                    sha256 = hash_file(partial)
                else:
                    sha256 = self._from_url(source, reference.name, partial, credentials, abort, progress)
                if reference.sha256 and sha256 != reference.sha256:
                    raise _FetchError(f"hash mismatch: expected sha256 {reference.sha256}, got {sha256}")
                try:
                    check_model_file(partial)
                except CorruptModel as exc:
                    raise _FetchError(str(exc)) from None
                cached = self.cache.commit(partial, reference.key, folder, reference.name, sha256)
            finally:
                partial.unlink(missing_ok=True)
        return cached

    def _from_url(
        self,
        source: WebFile | BucketObject,
        name: str,
        partial: Path,
        credentials: Credentials,
        abort: threading.Event,
        progress: Progress,
    ) -> str:
        """Download into `partial` (an s3:// object through its signed URL); the sha256,
        computed on the way (no second read)."""
        limit = self.settings.model_download_max_bytes
        try:
            download = open_source(source, limit, credentials.bucket, credentials.headers_for, MODEL_CHUNK_BYTES)
        except NoBucket:  # fetch_all refuses s3:// references without a bucket first
            raise _FetchError("no bucket to read an s3:// reference with") from None

        def abort_when_told() -> None:
            abort.wait()
            download.abort()

        watcher = threading.Thread(target=abort_when_told, daemon=True)
        watcher.start()
        written = 0
        reported_at = 0.0
        digest = hashlib.sha256()
        try:
            with open(partial, "wb") as file:

                def write(chunk: bytes) -> None:
                    nonlocal written, reported_at
                    file.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    now = time.monotonic()
                    if now - reported_at >= REPORT_EVERY_S:  # the relay sends less often still
                        reported_at = now
                        total = download.total_bytes
                        progress(_downloading(name, written, total), written / total if total else None)

                download.stream(write)
            return digest.hexdigest()
        except DownloadRefused as exc:
            if isinstance(exc, TooLarge):
                raise _FetchError(_too_large_url(self.settings.model_download_max_bytes)) from None
            raise _FetchError(refusal(exc)) from None
        except (requests.RequestException, ValueError, OSError, TimeoutError) as exc:
            if abort.is_set():
                raise _FetchError("stopped (the job was cancelled or ran out of time)") from None
            if is_disk_full(exc):
                raise _FetchError(MODEL_CACHE_FULL) from None
            raise _FetchError(describe(exc)) from None
        finally:
            abort.set()

    def _from_hub(
        self,
        source: HubFile,
        name: str,
        partial: Path,
        credentials: Credentials,
        abort: threading.Event,
        progress: Progress,
    ) -> None:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
        from tqdm.auto import tqdm

        token = credentials.hub_token or self.settings.hf_token or False
        endpoint = self.settings.hf_endpoint
        url = hf_hub_url(source.repo_id, source.filename, revision=source.revision, endpoint=endpoint)
        folder = partial.with_suffix(".hub")

        class Reporting(tqdm):  # huggingface_hub reports its download here
            def update(self, n: float | None = 1) -> bool | None:
                if abort.is_set():
                    raise TimeoutError("aborted")
                shown = super().update(n)
                total = self.total or 0
                progress(_downloading(name, int(self.n), int(total)), self.n / total if total else None)
                return shown

        try:
            size = get_hf_file_metadata(url, token=token).size or 0
            if size > self.settings.model_download_max_bytes:
                raise _FetchError(_too_large(size, self.settings.model_download_max_bytes))
            path = hf_hub_download(
                source.repo_id, source.filename, revision=source.revision, token=token, endpoint=endpoint,
                local_dir=folder, tqdm_class=Reporting,
            )  # fmt: skip
            Path(path).replace(partial)
        except (EntryNotFoundError, RepositoryNotFoundError) as exc:
            raise _FetchError(f"not found on the Hub ({type(exc).__name__})") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise _FetchError(f"the Hub answered HTTP {status}") from None
        except (requests.RequestException, OSError, TimeoutError) as exc:
            if is_disk_full(exc) and not abort.is_set():
                raise _FetchError(MODEL_CACHE_FULL) from None
            raise _FetchError("stopped" if abort.is_set() else describe(exc)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Credentials:
    """A job's credentials for private model sources (secrets: repr shows nothing)."""

    hub_token: str | None = None
    headers: Mapping[str, Mapping[str, str]] | None = None  # host -> headers
    bucket: OutputStore | None = None  # signs s3:// references (the job's own bucket, else the worker's)

    @classmethod
    def from_job(cls, given: ModelCredentials, bucket: OutputStore | None = None) -> Credentials:
        token = given.huggingface_token.get_secret_value() if given.huggingface_token else None
        headers = {host: {k: v.get_secret_value() for k, v in values.items()} for host, values in given.headers.items()}
        return cls(token, headers, bucket)

    def __repr__(self) -> str:
        return "Credentials(...)"

    def headers_for(self, url: str) -> dict[str, str]:
        host = (urlparse(url).hostname or "").lower()
        return dict((self.headers or {}).get(host, {}))


log = logging.getLogger(__name__)

HOLD_ATTEMPTS = 3  # fetches of a model that other jobs' evictions keep taking before it is held
MODEL_CACHE_FULL = (
    "the model cache's disk is full: free room on it (MODEL_CACHE_DIR) or lower MODEL_CACHE_MAX_GB so older "
    "models are evicted sooner"
)


class _FetchError(Exception):
    """A download failed; the message is the reason, for people."""


def _downloading(name: str, done: int, total: int) -> str:
    if total:
        return f"downloading {name}: {100 * done // total}% ({done / 1e6:.0f} of {total / 1e6:.0f} MB)"
    return f"downloading {name}: {done / 1e6:.0f} MB"


def _too_large(size: int, limit: int) -> str:
    return f"too large: {size / 1e9:.2f} GB, more than MODEL_DOWNLOAD_MAX_GB ({limit / 1e9:g} GB)"


def _too_large_url(limit: int) -> str:
    return f"too large: more than MODEL_DOWNLOAD_MAX_GB ({limit / 1e9:g} GB)"
