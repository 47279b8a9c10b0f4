"""Models from RunPod's model cache: the build skips them, start-up links them in."""

import hashlib
import json
import os

from .conftest import run_script

SHA = hashlib.sha256(b"weights").hexdigest()
COMMIT = "a" * 40


def manifest(tmp_path, revision="main"):
    entries = [
        {"repo_id": "acme/flux", "file": "split/flux.safetensors", "revision": revision, "sha256": SHA,
         "folder": "diffusion_models", "from": "runpod-cache"},
        {"repo_id": "acme/absent", "file": "x.safetensors", "revision": COMMIT, "sha256": SHA,
         "folder": "loras", "from": "runpod-cache"},
    ]  # fmt: skip
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": entries}))
    return path


def hf_cache(tmp_path):
    """RunPod's layout: the Hugging Face hub cache, a branch ref, a snapshot linking into blobs/."""
    repo = tmp_path / "cache" / "models--acme--flux"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    (repo / "blobs" / SHA).write_bytes(b"weights")
    snapshot = repo / "snapshots" / COMMIT / "split"
    snapshot.mkdir(parents=True)
    (snapshot / "flux.safetensors").symlink_to(repo / "blobs" / SHA)
    return tmp_path / "cache"


def test_a_cached_model_is_linked_into_its_folder_and_a_missing_one_named(tmp_path):
    cache = hf_cache(tmp_path)
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    (models / "diffusion_models" / "flux.safetensors").symlink_to(tmp_path / "stale")  # from an older start

    result = run_script(
        "scripts/image/link_cached_models.py",
        *("--manifest", str(manifest(tmp_path)), "--models-dir", str(models), "--cache", str(cache)),
        env=dict(os.environ),
    )

    assert result.returncode == 0, result.stderr
    linked = models / "diffusion_models" / "flux.safetensors"
    assert linked.read_bytes() == b"weights"
    assert linked.resolve() == (cache / "models--acme--flux" / "blobs" / SHA)
    expected = cache / "models--acme--absent" / "snapshots" / COMMIT / "x.safetensors"
    assert f"loras/x.safetensors: not in RunPod's model cache (looked for {expected})" in result.stderr
    assert "1 of 2 model(s) from RunPod's cache linked" in result.stderr


def test_the_build_does_not_download_a_cached_model(tmp_path):
    result = run_script(
        "scripts/image/fetch_models.py",
        *("--manifest", str(manifest(tmp_path)), "--models-dir", str(tmp_path / "models")),
        env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"},  # nothing answers: no download may be tried
    )
    assert result.returncode == 0, result.stderr
    assert "0 model(s) in place" in result.stderr
    assert not (tmp_path / "models").exists()


def test_an_unknown_source_is_refused(tmp_path):
    path = manifest(tmp_path)
    document = json.loads(path.read_text())
    document["models"][0]["from"] = "volume"
    path.write_text(json.dumps(document))
    result = run_script("scripts/image/fetch_models.py", "--manifest", str(path), "--models-dir", str(tmp_path / "m"))
    assert result.returncode == 1
    assert "models[0].from: must be one of image, runpod-cache" in result.stderr
