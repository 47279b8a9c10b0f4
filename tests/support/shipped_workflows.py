"""The shipped named workflows (ComfyUI/workflows), staged to name a stand-in checkpoint.

They name the image's SD1.5 checkpoint (ComfyUI/models.json); the tests' ComfyUI and
the image test's build have a generated one under another name. Staging rewrites that
one file name and nothing else, so the files proven are the shipped ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "ComfyUI" / "workflows"


def baked_checkpoint() -> str:
    manifest = json.loads((REPO_ROOT / "ComfyUI" / "models.json").read_text())
    return next(model["file"].rsplit("/", 1)[-1] for model in manifest["models"] if model["folder"] == "checkpoints")


def stage_workflows(target: Path, checkpoint: str) -> Path:
    """Copy the shipped workflows into `target`, naming `checkpoint` instead of the baked one."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in sorted(SHIPPED.iterdir()):
        text = path.read_text().replace(baked_checkpoint(), checkpoint)
        (target / path.name).write_text(text)
    return target
