"""scripts/image/fetch_models.py against a local Hugging Face-compatible endpoint."""

import hashlib
import json
import os

from comfy_worker.models.provenance import built_marker
from tests.support.fake_hub import fake_hub

from .conftest import run_script

DATA = b"not really a model " * 512


def fetch(tmp_path, endpoint, sha256, name=None):
    entry = {
        "repo_id": "acme/tiny",
        "file": "weights/tiny.safetensors",
        "revision": "main",
        "sha256": sha256,
        "folder": "loras",
    }
    if name:
        entry["name"] = name
    manifest = tmp_path / "models.json"
    manifest.write_text(json.dumps({"models": [entry]}))
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_TOKEN", None)
    return run_script(
        "scripts/image/fetch_models.py", "--manifest", str(manifest), "--models-dir", str(tmp_path / "models"), env=env
    )


def test_downloads_verifies_and_places_the_file_once(tmp_path):
    with fake_hub({"acme/tiny/weights/tiny.safetensors": DATA}) as endpoint:
        first = fetch(tmp_path, endpoint, hashlib.sha256(DATA).hexdigest(), name="renamed.safetensors")
        second = fetch(tmp_path, endpoint, hashlib.sha256(DATA).hexdigest(), name="renamed.safetensors")

    assert first.returncode == 0, first.stderr
    target = tmp_path / "models" / "loras" / "renamed.safetensors"
    assert target.read_bytes() == DATA
    assert "present:" in second.stderr
    assert "fetched" not in second.stderr
    leftovers = [p.name for p in (tmp_path / "models" / "loras").iterdir()]
    assert sorted(leftovers) == [".renamed.safetensors.sha256", "renamed.safetensors"]
    # The worker's provenance reads that marker instead of hashing the file again.
    assert built_marker(target) == hashlib.sha256(DATA).hexdigest()


def test_a_wrong_sha256_fails_and_leaves_nothing(tmp_path):
    with fake_hub({"acme/tiny/weights/tiny.safetensors": DATA}) as endpoint:
        result = fetch(tmp_path, endpoint, "0" * 64)

    assert result.returncode == 1
    assert "acme/tiny/weights/tiny.safetensors@main: sha256 mismatch" in result.stderr
    assert hashlib.sha256(DATA).hexdigest() in result.stderr
    assert list((tmp_path / "models" / "loras").iterdir()) == []


def test_a_missing_file_fails_with_its_name(tmp_path):
    with fake_hub({}) as endpoint:
        result = fetch(tmp_path, endpoint, "0" * 64)

    assert result.returncode == 1
    assert "acme/tiny/weights/tiny.safetensors@main: download failed" in result.stderr
