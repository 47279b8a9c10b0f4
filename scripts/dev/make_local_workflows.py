"""The shipped named workflows for the local runtime: ComfyUI/workflows copied into
.local/workflows with the generated checkpoint in place of the image's, and a small
default size (the random local model draws noise at any size; 64 px runs in a second
on a CPU). The local scripts point WORKFLOWS_DIR there, so a named-workflow job runs
as written both locally and in the image. Idempotent: files are rewritten only when
they change.

    python scripts/dev/make_local_workflows.py --out .local/workflows
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from make_tiny_checkpoint import CHECKPOINT_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_SIZE = 64

log = logging.getLogger("make_local_workflows")


def localized(workflow: dict[str, Any]) -> dict[str, Any]:
    """An API-format workflow with the generated checkpoint and the small size."""
    nodes = json.loads(json.dumps(workflow))
    for node in nodes.values():
        inputs = node.get("inputs", {})
        if "ckpt_name" in inputs and isinstance(inputs["ckpt_name"], str):
            inputs["ckpt_name"] = CHECKPOINT_NAME
        if node.get("class_type") == "EmptyLatentImage":
            inputs.update(width=LOCAL_SIZE, height=LOCAL_SIZE)
    return nodes


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipped", type=Path, default=REPO_ROOT / "ComfyUI" / "workflows")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[make_local_workflows] %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.iterdir():
        if not (args.shipped / stale.name).exists():
            stale.unlink()
    for source in sorted(args.shipped.iterdir()):
        target = args.out / source.name
        if source.suffix == ".json":
            workflow = json.loads(source.read_text())
            if "nodes" in workflow:  # the UI format: no stand-in needed by the shipped ones so far
                shutil.copyfile(source, target)
                log.warning("%s is in the UI format: copied as it is", source.name)
                continue
            write_if_changed(target, json.dumps(localized(workflow), indent=2) + "\n")
        else:
            write_if_changed(target, source.read_text())
    log.info("%s: the shipped workflows with %s at %d px", args.out, CHECKPOINT_NAME, LOCAL_SIZE)


if __name__ == "__main__":
    main()
