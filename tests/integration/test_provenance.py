"""Provenance and replay on the real ComfyUI (CPU): every result says what made it, a replay
of a job with random seeds gives the same pixels, and a replay this worker would run
differently is refused naming the difference."""

from __future__ import annotations

import hashlib

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME
from tests.support.workflows import REPO_ROOT, decode_image, txt2img


def pinned(name: str) -> str:
    lines = (REPO_ROOT / "ComfyUI" / "comfyui.lock").read_text().splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith(f"{name}="))


async def test_a_replay_of_a_job_with_random_seeds_gives_the_same_pixels(run_job, comfyui, clean_after):
    inline = {"storage": "base64"}
    first = await run_job({"workflow": txt2img(steps=2, size=64), "randomize_seeds": True, "output": inline})

    provenance = first["provenance"]
    assert provenance["comfyui"] == {
        "version": pinned("COMFYUI_VERSION").removeprefix("v"),
        "commit": pinned("COMFYUI_COMMIT"),
    }
    [(model, sha256)] = provenance["models"].items()
    assert model == f"checkpoints/{CHECKPOINT_NAME}"
    checkpoint = comfyui.base_dir / "models" / "checkpoints" / CHECKPOINT_NAME
    assert sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert provenance["seeds"] == first["seeds"]
    assert "worker_save_image" in provenance["node_packs"]

    again = await run_job({"replay": provenance, "output": inline})

    assert again["seeds"] == first["seeds"]
    assert again["provenance"] == provenance
    pixels = [decode_image(result["images"][0]).tobytes() for result in (first, again)]
    assert pixels[0] == pixels[1], "the same seed on the same worker: the same pixels"


async def test_a_replay_this_worker_would_run_differently_is_refused_naming_why(run_job, clean_after):
    first = await run_job({"workflow": txt2img(steps=1, size=64, seed=5), "output": {"storage": "base64"}})
    provenance = first["provenance"]
    model = next(iter(provenance["models"]))
    elsewhere = {
        **provenance,
        "models": {model: "0" * 64},
        "node_packs": {**provenance["node_packs"], "a_pack_not_here": "1" * 40},
    }

    refused = await run_job({"replay": elsewhere})

    assert refused["error_type"] == "replay_refused"
    assert refused["details"]["differences"] == [
        "node pack 'a_pack_not_here' ran it; this worker does not have it",
        f"model file {model} had sha256 {'0' * 64}; this worker's has {provenance['models'][model]}",
    ]
