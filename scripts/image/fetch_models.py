"""Download the models pinned in ComfyUI/models.json and verify each against its sha256.

    python scripts/image/fetch_models.py --manifest ComfyUI/models.json --models-dir /comfyui/models

Each entry is fetched with huggingface_hub (HF_ENDPOINT, HF_TOKEN and
HF_XET_HIGH_PERFORMANCE are honoured) into a staging folder beside its target,
hashed, and only then moved to <models-dir>/<folder>/<name>. A mismatch fails
with the file, the expected and the actual digest, and leaves nothing behind.
A verified file gets a marker (.<name>.sha256) so later runs skip it without
hashing gigabytes again: run it at every start against a network volume and it
downloads once. Public models need no token; for gated ones pass one in HF_TOKEN
(the Docker build takes it as a build argument, since RunPod's builds have no secrets).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path

# manifests.py sits beside this script, and a script's folder is on its import path.
from manifests import ManifestError, Model, load_models

log = logging.getLogger("fetch_models")


class ModelError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def marker_for(target: Path) -> Path:
    return target.with_name(f".{target.name}.sha256")


def is_fetched(model: Model, target: Path) -> bool:
    marker = marker_for(target)
    return target.exists() and marker.exists() and marker.read_text().strip() == model.sha256


def fetch(model: Model, models_dir: Path) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    target = models_dir / model.relative_path
    if is_fetched(model, target):
        log.info("present: %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    source = f"{model.repo_id}/{model.file}@{model.revision}"
    # Staging beside the target keeps the final move a rename on the same disk.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".staging-") as staging:
        try:
            downloaded = Path(hf_hub_download(model.repo_id, model.file, revision=model.revision, local_dir=staging))
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise ModelError(f"{source}: download failed: {exc}") from None
        actual = sha256_of(downloaded)
        if actual != model.sha256:
            raise ModelError(f"{source}: sha256 mismatch: manifest says {model.sha256}, file is {actual}")
        os.replace(downloaded, target)
    marker_for(target).write_text(model.sha256 + "\n")
    log.info("fetched and verified: %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[fetch_models] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        models = [model for model in load_models(args.manifest) if model.source == "image"]
        for model in models:
            fetch(model, args.models_dir)
    except (ManifestError, ModelError) as exc:
        log.error("%s", exc)
        return 1
    log.info("%d model(s) in place under %s", len(models), args.models_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
