"""Read the model files the first job will load into the page cache while ComfyUI boots.

    python -m comfy_worker.models.prefetch      (start.sh runs it in the background, beside ComfyUI)

On a cold container ComfyUI's boot (imports, CUDA init, custom nodes) and reading
the first job's checkpoint from disk would otherwise be paid one after the other:
ComfyUI reads the model only when the first (warm-up) prompt asks for it. Read
during the boot, the model then loads from memory.

Which files, first found wins:
  PREFETCH_MODELS   paths, comma- or space-separated: absolute, or relative to a
                    model root (`checkpoints/v1-5-pruned-emaonly-fp16.safetensors`)
  WARMUP_JOB        the model files its workflow names (API format), found in the
                    model roots' folders
  the manifest      every model in ComfyUI/models.json (MODELS_MANIFEST)
Model roots: $COMFYUI_PATH/models, then $VOLUME_MODELS_DIR (/runpod-volume/models).

Skipped where it cannot help: files already in the page cache (mincore), and
whatever does not fit in MemAvailable less PREFETCH_MEMORY_RESERVE_GB (default 2):
page cache is reclaimable, but prefetching what will be evicted before it is
used only costs disk bandwidth. PREFETCH=off turns it off. It reads sequentially in
8 MiB chunks into one reused buffer (its own memory stays ~8 MiB). ComfyUI's boot
comes first: start.sh runs it at idle CPU and I/O priority, and between chunks it
pauses while ComfyUI (COMFY_PID_FILE) reads from storage itself, as it does while
importing torch and CUDA's libraries (idle I/O priority alone does nothing under
the multi-queue schedulers of cloud disks).

Standard library only: it starts before anything heavy is imported.
"""

from __future__ import annotations

import ctypes
import json
import logging
import mmap
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("prefetch")

CHUNK_BYTES = 8 * 1024 * 1024
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
PAGE_BYTES = mmap.PAGESIZE
BUSY_BYTES_PER_S = 20e6  # ComfyUI reading faster than this is loading its libraries
GIVE_WAY_PAUSE_S = 0.02
MAX_GIVE_WAY_S = 30.0  # never starve the prefetch for longer


@dataclass(frozen=True)
class PrefetchReport:
    read: list[Path]
    read_bytes: int
    cached: list[Path]  # already in the page cache
    no_room: list[Path]  # would not fit in the memory left
    missing: list[str]
    seconds: float
    gave_way_s: float = 0.0

    def summary(self) -> str:
        return (
            f"read {len(self.read)} file(s), {self.read_bytes / 1e9:.2f} GB in {self.seconds:.2f} s "
            f"(of which {self.gave_way_s:.2f} s paused while ComfyUI read); "
            f"already cached {len(self.cached)}, no room {len(self.no_room)}, not found {len(self.missing)}"
        )


def model_roots(env: dict[str, str]) -> list[Path]:
    return [
        Path(env.get("COMFYUI_PATH", "/comfyui")) / "models",
        Path(env.get("VOLUME_MODELS_DIR", "/runpod-volume/models")),
    ]


def names_in_job(job: Any) -> list[str]:
    """Model file names a job's API-format workflow names (string inputs with a model suffix)."""
    workflow = (job.get("input") or {}).get("workflow") if isinstance(job, dict) else None
    if not isinstance(workflow, dict):
        return []
    names = []
    for node in workflow.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for value in (inputs or {}).values():
            if isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES) and "://" not in value:
                names.append(value)
    return names


def names_in_manifest(manifest: Path) -> list[str]:
    models = json.loads(manifest.read_text()).get("models", [])
    return [f"{m['folder']}/{m.get('name') or Path(m['file']).name}" for m in models]


def resolve(names: Iterable[str], roots: list[Path]) -> tuple[list[Path], list[str]]:
    """Each name as an absolute path, a path under a root, or a file in one of a root's
    folders (how workflows name models: `ckpt_name` without its folder)."""
    found: list[Path] = []
    missing: list[str] = []
    for name in dict.fromkeys(names):
        path = next(candidates(name, roots), None)
        if path is None:
            missing.append(name)
        elif path not in found:
            found.append(path)
    return found, missing


def candidates(name: str, roots: list[Path]) -> Iterator[Path]:
    if os.path.isabs(name):
        if Path(name).is_file():
            yield Path(name).resolve()
        return
    for root in roots:
        if (root / name).is_file():
            yield (root / name).resolve()
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                if (folder / name).is_file():
                    yield (folder / name).resolve()


def cached_fraction(path: Path) -> float:
    """The share of the file's pages in the page cache (mincore on a private mapping,
    which touches nothing)."""
    size = path.stat().st_size
    if size == 0:
        return 1.0
    libc = ctypes.CDLL(None, use_errno=True)
    pages = (size + PAGE_BYTES - 1) // PAGE_BYTES
    residency = (ctypes.c_ubyte * pages)()
    with path.open("rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as mapping:
        anchor = ctypes.c_char.from_buffer(mapping)
        try:
            status = libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(size), residency)
        finally:
            del anchor  # the mapping cannot close while a ctypes view holds it
    if status != 0:
        return 0.0
    return 1.0 - bytes(residency).count(0) / pages


def memory_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


class GiveWay:
    """Pauses the prefetch while ComfyUI reads from storage itself (its libraries
    while it boots: /proc/<pid>/io read_bytes), so the boot keeps the disk first."""

    def __init__(self, pid_file: Path | None, busy_bytes_per_s: float = BUSY_BYTES_PER_S):
        self.pid_file = pid_file
        self.busy_bytes_per_s = busy_bytes_per_s
        self.waited_s = 0.0
        self._last: tuple[float, int] | None = None

    def _read_bytes(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text()) if self.pid_file else 0
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    def busy(self) -> bool:
        now, read = time.monotonic(), self._read_bytes()
        if read is None:
            return False
        last, self._last = self._last, (now, read)
        return last is not None and now > last[0] and (read - last[1]) / (now - last[0]) > self.busy_bytes_per_s

    def wait(self) -> None:
        while self.waited_s < MAX_GIVE_WAY_S and self.busy():
            time.sleep(GIVE_WAY_PAUSE_S)
            self.waited_s += GIVE_WAY_PAUSE_S


def read_through(path: Path, buffer: bytearray, give_way: GiveWay | None = None) -> int:
    """Read the whole file once (into the page cache), in chunks into one buffer."""
    total = 0
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as file:
        while chunk := file.readinto(view):
            total += chunk
            if give_way is not None:
                give_way.wait()
    return total


def prefetch(
    paths: list[Path], missing: list[str], memory_budget: int, give_way: GiveWay | None = None
) -> PrefetchReport:
    started = time.monotonic()
    read: list[Path] = []
    cached: list[Path] = []
    no_room: list[Path] = []
    read_bytes = 0
    buffer = bytearray(CHUNK_BYTES)
    for path in paths:
        if cached_fraction(path) >= 0.95:
            cached.append(path)
            continue
        size = path.stat().st_size
        if read_bytes + size > memory_budget:
            no_room.append(path)
            continue
        read_bytes += read_through(path, buffer, give_way)
        read.append(path)
    waited = give_way.waited_s if give_way else 0.0
    return PrefetchReport(read, read_bytes, cached, no_room, missing, time.monotonic() - started, waited)


def planned_names(env: dict[str, str], worker_dir: Path) -> tuple[str, list[str]]:
    """(where the list came from, the names), by the order in the module doc."""
    declared = env.get("PREFETCH_MODELS", "").strip()
    if declared:
        return "PREFETCH_MODELS", [name for name in re.split(r"[,\s]+", declared) if name]
    warmup = env.get("WARMUP_JOB")
    if warmup and Path(warmup).is_file():
        return f"WARMUP_JOB {warmup}", names_in_job(json.loads(Path(warmup).read_text()))
    manifest = Path(env.get("MODELS_MANIFEST", worker_dir / "ComfyUI" / "models.json"))
    if manifest.is_file():
        return f"manifest {manifest}", names_in_manifest(manifest)
    return "nothing", []


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    logging.basicConfig(level=logging.INFO, format="[prefetch] %(message)s", force=True)
    if env.get("PREFETCH", "auto").lower() in {"off", "false", "0", "no"}:
        log.info("PREFETCH=off")
        return 0
    source, names = planned_names(env, Path(__file__).resolve().parents[2])
    paths, missing = resolve(names, model_roots(env))
    reserve = int(float(env.get("PREFETCH_MEMORY_RESERVE_GB", "2")) * 1e9)
    budget = max(memory_available() - reserve, 0)
    log.info("%d model file(s) from %s; memory budget %.1f GB", len(paths), source, budget / 1e9)
    pid_file = env.get("COMFY_PID_FILE")
    report = prefetch(paths, missing, budget, GiveWay(Path(pid_file) if pid_file else None))
    log.info(report.summary())
    for name in report.missing:
        log.info("not found in %s: %s", ", ".join(map(str, model_roots(env))), name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
