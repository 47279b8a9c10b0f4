"""The model cache: model files fetched by jobs, kept once, shared by every worker on the volume.

Layout under MODEL_CACHE_DIR (start.sh points ComfyUI's model paths at it, so
`<root>/loras/x.safetensors` is the LoRA `x.safetensors`):

    <folder>/<sha256[:16]>-<name>   complete, verified files, named by their content
    .sources/<key>.json             source (URL or Hugging Face reference) -> the file it gave
    .partial/                       downloads in progress: never in a model folder
    .verified/                      each file's hash and size when last hashed
    .locks/<key>.lock               one downloader per source, across processes

Contract (all blocking: the worker calls it in a thread):
- `lookup(source_key, sha256)` finds a complete file for a source, or a file with
  that content; a file that fails its check (the safetensors header, or a changed
  size since it was hashed) is deleted, so it is fetched again.
- `download_lock(key)` is an exclusive `flock` held while one process downloads;
  others wait on it (and then find the file).
- `commit(partial, ...)` moves a verified download into its folder with one
  `rename` (atomic: a reader sees the whole file or none).
- `hold(path)` takes a shared `flock` on a file for the duration of a job;
  `evict(max_bytes)` removes the least recently used files until the cache fits,
  skipping any file a job holds (its exclusive lock attempt fails).

flock works between processes on one machine and on network file systems that
support it; on one that does not, two workers may both download a file (each
commit is still atomic, and the second rename replaces the first with the same bytes).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

SAFETENSORS = (".safetensors", ".sft")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
CHUNK_BYTES = 1024 * 1024


class CorruptModel(Exception):
    """A model file that is not what its extension says (the message says why)."""


def check_model_file(path: Path) -> None:
    """A safetensors file must have a readable header whose tensors end where the file
    ends; a GGUF file must start with its magic. Other formats (pickles) are not read."""
    suffix = path.suffix.lower()
    with open(path, "rb") as file:
        if suffix in SAFETENSORS:
            size = path.stat().st_size
            raw = file.read(8)
            if len(raw) < 8:
                raise CorruptModel("not a safetensors file (shorter than its header)")
            (header_bytes,) = struct.unpack("<Q", raw)
            if header_bytes > min(MAX_HEADER_BYTES, size - 8):
                raise CorruptModel("not a safetensors file (no valid header)")
            try:
                header = json.loads(file.read(header_bytes))
                end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError):
                raise CorruptModel("not a safetensors file (its header is not valid JSON)") from None
            if 8 + header_bytes + end != size:
                raise CorruptModel(
                    f"a truncated or padded safetensors file ({size} bytes, its header says {8 + header_bytes + end})"
                )
        elif suffix == ".gguf" and file.read(4) != b"GGUF":
            raise CorruptModel("not a GGUF file")


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedModel:
    path: Path
    folder: str
    sha256: str

    @property
    def name(self) -> str:
        """What a workflow's loader input names (relative to the model folder)."""
        return self.path.name


class Hold:
    """A job's shared lock on a cached file: eviction leaves it alone until released."""

    def __init__(self, file: IO[bytes]):
        self._file = file

    def release(self) -> None:
        self._file.close()  # closing drops the flock


class ModelCache:
    def __init__(self, root: Path):
        self.root = root

    def _dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- finding -------------------------------------------------------------------

    def lookup(self, key: str, sha256: str | None) -> CachedModel | None:
        """A verified cached file for the source `key`, or (given its sha256) any cached file
        with that content. A file that fails its check is removed and None returned."""
        candidates = []
        record = self._read_record(key)
        if record and (sha256 is None or record["sha256"] == sha256):
            candidates.append(CachedModel(self.root / record["file"], record["folder"], record["sha256"]))
        if sha256:
            for path in self.root.glob(f"*/{sha256[:16]}-*"):
                candidates.append(CachedModel(path, path.parent.name, sha256))
        for cached in candidates:
            if cached.path.is_file() and self._still_good(cached):
                os.utime(cached.path)  # last used: eviction goes by this
                return cached
        return None

    def _still_good(self, cached: CachedModel) -> bool:
        """Re-hash only when the file changed since it was hashed (size or mtime on the marker)."""
        marker = self._marker(cached.path)
        stat = cached.path.stat()
        try:
            check_model_file(cached.path)
            if marker.read_text() != f"{cached.sha256} {stat.st_size}" and hash_file(cached.path) != cached.sha256:
                raise CorruptModel("its content no longer matches its sha256")
            marker.write_text(f"{cached.sha256} {stat.st_size}")
            return True
        except (CorruptModel, OSError) as exc:
            log.warning("cached model %s is unusable (%s): removing it, it will be fetched again", cached.path, exc)
            cached.path.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
            return False

    def _marker(self, path: Path) -> Path:
        """Says the file's size when it was last hashed: unchanged, it need not be hashed again."""
        return self._dir(".verified") / f"{path.parent.name}--{path.name}"

    def _read_record(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / ".sources" / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    # -- downloading -----------------------------------------------------------------

    @contextlib.contextmanager
    def download_lock(self, key: str, give_up: Callable[[], bool], on_wait: Callable[[], None]) -> Iterator[None]:
        """Hold the source's download lock; while another process has it, call `on_wait`
        once and poll (so `give_up` can end the wait: a cancel, a deadline)."""
        with open(self._dir(".locks") / f"{key}.lock", "ab") as lock:
            told = False
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if give_up():
                        raise TimeoutError("gave up waiting for another worker's download") from None
                    if not told:
                        on_wait()
                        told = True
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def partial_path(self, name: str) -> Path:
        return self._dir(".partial") / f"{uuid.uuid4().hex}-{name}"

    def commit(self, partial: Path, key: str, folder: str, name: str, sha256: str) -> CachedModel:
        """Move a complete, verified download into its model folder, atomically."""
        target = self._dir(folder) / f"{sha256[:16]}-{name}"
        os.replace(partial, target)
        self._marker(target).write_text(f"{sha256} {target.stat().st_size}")
        record = {"file": f"{folder}/{target.name}", "folder": folder, "sha256": sha256}
        record_path = self._dir(".sources") / f"{key}.json"
        temporary = record_path.with_suffix(f".{uuid.uuid4().hex}")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, record_path)
        return CachedModel(target, folder, sha256)

    # -- using and evicting ------------------------------------------------------------

    def hold(self, cached: CachedModel) -> Hold | None:
        """A shared lock on the file, or None if it is gone (another job's eviction took it
        between the lookup and now: fetch it again). Evictions take an exclusive lock before
        they unlink, so a file still at its path once held stays until released."""
        try:
            file = open(cached.path, "rb")
        except FileNotFoundError:
            return None
        fcntl.flock(file, fcntl.LOCK_SH)
        try:
            same = os.stat(cached.path).st_ino == os.fstat(file.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # evicted while this waited for the lock
            file.close()
            return None
        return Hold(file)

    def evict(self, max_bytes: int, keep: Path | None = None) -> list[Path]:
        """Remove least recently used files until the cache holds at most `max_bytes`;
        a file some job holds, and `keep` (just fetched, about to be held), are skipped.
        Returns what was removed."""
        files = [
            p
            for p in self.root.glob("*/*")
            if p.is_file() and not p.parent.name.startswith(".") and not p.name.startswith(".")
        ]
        stats = {path: path.stat() for path in files}
        total = sum(stat.st_size for stat in stats.values())
        removed = []
        for path in sorted(files, key=lambda p: stats[p].st_mtime):
            if total <= max_bytes:
                break
            if path == keep:
                continue
            with open(path, "rb") as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a running job uses it
                path.unlink(missing_ok=True)
                self._marker(path).unlink(missing_ok=True)
            total -= stats[path].st_size
            removed.append(path)
            log.info(
                "model cache: evicted %s (%.1f MB) to stay under %.1f GB",
                path,
                stats[path].st_size / 1e6,
                max_bytes / 1e9,
            )
        return removed

    def remove_partials(self, older_than_s: float) -> None:
        """Downloads left by a worker that died mid-way."""
        cutoff = time.time() - older_than_s
        for path in self._dir(".partial").iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
