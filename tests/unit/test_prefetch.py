"""Which model files are prefetched, and that reading them fills the page cache."""

import json
import os
from pathlib import Path

from comfy_worker.models import prefetch
from comfy_worker.models.prefetch import cached_fraction, names_in_job, planned_names, resolve
from tests.support.page_cache import evict


def model_file(root: Path, relative: str, size: int = 3 * 1024 * 1024) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_names_come_from_the_job_workflow_inputs():
    job = {
        "input": {
            "workflow": {
                "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
                "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "style.SafeTensors", "model": ["4", 0]}},
                "11": {"class_type": "X", "inputs": {"url": "https://host/x.safetensors", "text": "a cat"}},
            }
        }
    }
    assert names_in_job(job) == ["sd15.safetensors", "style.SafeTensors"]
    assert names_in_job({"input": {"workflow_name": "txt2img"}}) == []


def test_names_resolve_in_any_root_folder_and_missing_ones_are_named(tmp_path):
    roots = [tmp_path / "image", tmp_path / "volume"]
    baked = model_file(roots[0], "checkpoints/sd15.safetensors")
    on_volume = model_file(roots[1], "loras/style.safetensors")
    found, missing = resolve(["sd15.safetensors", "loras/style.safetensors", str(baked), "nope.safetensors"], roots)
    assert found == [baked.resolve(), on_volume.resolve()]  # the absolute path is the same file, listed once
    assert missing == ["nope.safetensors"]


def test_the_plan_prefers_the_declared_list_then_the_warmup_job_then_the_manifest(tmp_path):
    job = tmp_path / "warmup.json"
    job.write_text(json.dumps({"input": {"workflow": {"4": {"inputs": {"ckpt_name": "a.safetensors"}}}}}))
    manifest = tmp_path / "models.json"
    manifest.write_text(json.dumps({"models": [{"folder": "checkpoints", "file": "dir/b.safetensors"}]}))
    env = {"PREFETCH_MODELS": "x.safetensors, loras/y.safetensors", "WARMUP_JOB": str(job)}
    assert planned_names({**env, "MODELS_MANIFEST": str(manifest)}, tmp_path) == (
        "PREFETCH_MODELS",
        ["x.safetensors", "loras/y.safetensors"],
    )
    assert planned_names({"WARMUP_JOB": str(job)}, tmp_path)[1] == ["a.safetensors"]
    assert planned_names({"MODELS_MANIFEST": str(manifest)}, tmp_path)[1] == ["checkpoints/b.safetensors"]


def test_prefetch_reads_what_is_not_cached_within_the_memory_budget(tmp_path):
    first = model_file(tmp_path, "checkpoints/first.safetensors")
    second = model_file(tmp_path, "checkpoints/second.safetensors")
    for path in (first, second):
        evict(path)
    assert cached_fraction(first) < 0.5

    report = prefetch.prefetch([first, second], ["gone.safetensors"], memory_budget=4 * 1024 * 1024)

    assert report.read == [first], "the second would pass the budget"
    assert report.no_room == [second], "the second would pass the budget"
    assert cached_fraction(first) > 0.95
    assert report.read_bytes == first.stat().st_size
    assert report.missing == ["gone.safetensors"]
    again = prefetch.prefetch([first], [], memory_budget=1 << 40)
    assert again.cached == [first], "a cached file is not read again"
    assert again.read == [], "a cached file is not read again"


def test_prefetch_off_reads_nothing(tmp_path, capfd):
    model_file(tmp_path / "models", "checkpoints/a.safetensors")
    env = {"PREFETCH": "off", "COMFYUI_PATH": str(tmp_path), "PREFETCH_MODELS": "a.safetensors"}
    assert prefetch.main(env) == 0
    assert "PREFETCH=off" in capfd.readouterr().err


def test_the_prefetch_gives_way_while_comfyui_reads_from_storage(monkeypatch):
    # ComfyUI's read_bytes: climbing fast twice (its libraries), then still.
    reads = iter([0, 50_000_000, 100_000_000, 100_000_000, 100_000_000])
    give_way = prefetch.GiveWay(pid_file=None)
    monkeypatch.setattr(give_way, "_read_bytes", lambda: next(reads))
    assert not give_way.busy(), "the first look only sets the baseline"
    give_way.wait()
    assert give_way.waited_s == 2 * prefetch.GIVE_WAY_PAUSE_S


def test_without_comfyui_to_watch_the_prefetch_never_waits(tmp_path):
    give_way = prefetch.GiveWay(pid_file=tmp_path / "no.pid")
    give_way.wait()
    give_way.wait()
    assert give_way.waited_s == 0
