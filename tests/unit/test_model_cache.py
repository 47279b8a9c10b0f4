"""The model cache on disk: file checks, records, holds and eviction (no downloads)."""

from __future__ import annotations

import json
import os
import struct

import pytest

from comfy_worker.core.settings import Settings
from comfy_worker.models.model_cache import CachedModel, CorruptModel, ModelCache, check_model_file, hash_file
from comfy_worker.models.remote_models import Credentials, ModelFetcher, parse_reference


def safetensors(payload: bytes = b"\0" * 8) -> bytes:
    header = json.dumps(
        {"w": {"dtype": "F16", "shape": [len(payload) // 2], "data_offsets": [0, len(payload)]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + payload


def commit(cache: ModelCache, tmp_path, name: str, data: bytes):
    partial = cache.partial_path(name)
    partial.write_bytes(data)
    return cache.commit(partial, f"key-{name}", "loras", name, hash_file(partial))


def test_check_model_file(tmp_path):
    good = tmp_path / "a.safetensors"
    good.write_bytes(safetensors())
    check_model_file(good)
    for data, why in [(b"<html>", "not a safetensors file"), (safetensors()[:-2], "truncated")]:
        bad = tmp_path / "b.safetensors"
        bad.write_bytes(data)
        with pytest.raises(CorruptModel, match=why):
            check_model_file(bad)
    gguf = tmp_path / "c.gguf"
    gguf.write_bytes(b"GGML")
    with pytest.raises(CorruptModel, match="not a GGUF file"):
        check_model_file(gguf)


def test_commit_then_lookup_by_source_or_content(tmp_path):
    cache = ModelCache(tmp_path)
    cached = commit(cache, tmp_path, "a.safetensors", safetensors())
    assert cached.path == tmp_path / "loras" / f"{cached.sha256[:16]}-a.safetensors"
    assert not list((tmp_path / ".partial").iterdir())
    assert cache.lookup("key-a.safetensors", None) == cached
    assert cache.lookup("another-source", cached.sha256) == cached
    assert cache.lookup("key-a.safetensors", "0" * 64) is None  # the source now claims other content


def test_a_changed_file_is_rehashed_and_removed_when_wrong(tmp_path):
    cache = ModelCache(tmp_path)
    cached = commit(cache, tmp_path, "a.safetensors", safetensors(b"\1" * 8))
    cached.path.write_bytes(safetensors(b"\2" * 8))  # same size and a valid header, other content
    os.utime(cached.path, (1, 1))
    (tmp_path / ".verified" / f"loras--{cached.path.name}").write_text("stale")
    assert cache.lookup("key-a.safetensors", None) is None
    assert not cached.path.exists()


def test_eviction_is_least_recently_used_and_skips_held_and_kept_files(tmp_path):
    cache = ModelCache(tmp_path)
    files = [commit(cache, tmp_path, f"{n}.safetensors", safetensors(bytes([n]) * 8)) for n in range(4)]
    for age, cached in enumerate(files):
        os.utime(cached.path, (1000 + age, 1000 + age))
    size = files[0].path.stat().st_size
    hold = cache.hold(files[0])  # the oldest, but a job uses it
    assert hold is not None

    removed = cache.evict(max_bytes=2 * size, keep=files[1].path)

    assert removed == [files[2].path, files[3].path]  # 0 held, 1 kept: the rest go, oldest first
    hold.release()
    assert cache.evict(max_bytes=size) == [files[0].path]


def test_partials_left_by_a_dead_worker_are_removed_but_not_fresh_ones(tmp_path):
    cache = ModelCache(tmp_path)
    old, fresh = cache.partial_path("old.safetensors"), cache.partial_path("fresh.safetensors")
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (1, 1))
    cache.remove_partials(older_than_s=3600)
    assert not old.exists()
    assert fresh.exists()


def test_n9_a_file_evicted_before_the_hold_is_not_held(tmp_path):
    cache = ModelCache(tmp_path)
    cached = commit(cache, tmp_path, "a.safetensors", safetensors())
    assert cache.evict(max_bytes=0) == [cached.path]  # another job's eviction, before this one held it
    assert cache.hold(cached) is None


def test_n9_a_model_evicted_between_its_fetch_and_its_hold_is_fetched_again(tmp_path, monkeypatch):
    """Another job's download commits and evicts between this job's lookup and its hold: the
    job fetches the file again instead of failing with FileNotFoundError and a machine path."""
    settings = Settings.from_env({"MODEL_CACHE_DIR": str(tmp_path / "cache")})
    fetcher = ModelFetcher(settings, ModelCache(settings.model_cache_dir))
    good = commit(fetcher.cache, tmp_path, "a.safetensors", safetensors())
    gone = CachedModel(good.path.with_name("evicted.safetensors"), good.folder, good.sha256)
    fetched = iter([gone, good])
    monkeypatch.setattr(fetcher, "_fetch_once", lambda *args: next(fetched))

    cached, hold = fetcher._fetch(parse_reference("https://h/a.safetensors", False), "loras", Credentials(), None, None)

    assert cached == good
    assert next(fetched, None) is None
    hold.release()
