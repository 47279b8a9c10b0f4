"""Link the models ComfyUI/models.json takes from RunPod's model cache into ComfyUI's folders.

    python scripts/image/link_cached_models.py --manifest ComfyUI/models.json --models-dir /comfyui/models

start.sh runs it before ComfyUI starts. An entry with `"from": "runpod-cache"` is
not baked into the image: RunPod places the repository named in the endpoint's
Model setting in its Hugging Face cache layout under RUNPOD_HF_CACHE
(/runpod-volume/huggingface-cache/hub):

    models--<owner>--<repo>/refs/<branch>             the commit a branch points at
    models--<owner>--<repo>/snapshots/<commit>/<file>  the file (a link into blobs/)

The entry's revision (a commit, or a branch or tag resolved through refs/) picks the
snapshot, and `<models-dir>/<folder>/<name>` becomes a link to the file. A model
that is not there is logged with the path looked for; the worker still starts, and
a job naming it fails with the installed models listed. The sha256 is not checked
here (it would read every byte before ComfyUI could start); the cache is RunPod's.

Standard library only, like the other build steps.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from manifests import ManifestError, Model, load_models

log = logging.getLogger("link_cached_models")

DEFAULT_CACHE = "/runpod-volume/huggingface-cache/hub"


def snapshot_file(model: Model, cache: Path) -> Path:
    """Where the cache keeps the model's file (whether or not it is there)."""
    repo_dir = cache / f"models--{model.repo_id.replace('/', '--')}"
    commit = model.revision
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        ref = repo_dir / "refs" / model.revision
        commit = ref.read_text().strip() if ref.is_file() else model.revision
    return repo_dir / "snapshots" / commit / model.file


def link(model: Model, cache: Path, models_dir: Path) -> bool:
    source = snapshot_file(model, cache)
    if not source.is_file():
        log.warning("%s: not in RunPod's model cache (looked for %s)", model.relative_path, source)
        return False
    target = models_dir / model.relative_path
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    os.symlink(source.resolve(), target)
    log.info("%s -> %s", target, source.resolve())
    return True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[link_cached_models] %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("RUNPOD_HF_CACHE", DEFAULT_CACHE)))
    args = parser.parse_args()
    try:
        cached = [model for model in load_models(args.manifest) if model.source == "runpod-cache"]
    except ManifestError as exc:
        log.error("%s", exc)
        return 1
    linked = sum(link(model, args.cache, args.models_dir) for model in cached)
    if cached:
        log.info("%d of %d model(s) from RunPod's cache linked", linked, len(cached))
    return 0


if __name__ == "__main__":
    sys.exit(main())
