"""The model cache on disk: file checks, records, holds and eviction (no downloads)."""

from __future__ import annotations

import json
import os
import struct

import pytest

from comfy_worker.model_cache import CorruptModel, ModelCache, check_model_file, hash_file


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
    assert not old.exists() and fresh.exists()
