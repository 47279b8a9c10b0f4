"""Run test_input.json's txt2img through the worker, on the local tiny checkpoint.

The job goes through the RunPod SDK's own job runner (`run_job`, what
`python rp_handler.py --test_input ...` calls), then each returned image is
decoded and written to --out. Differences from test_input.json, so it finishes in
seconds on a CPU: the checkpoint is the generated noise model, the image is
128x128 and the sampler takes 4 steps.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
from pathlib import Path
from typing import Any

from make_tiny_checkpoint import CHECKPOINT_NAME  # beside this script
from runpod.serverless.modules.rp_job import run_job

from comfy_worker.settings import Settings
from comfy_worker.worker import Worker
from rp_handler import configure_logging

REPO_ROOT = Path(__file__).resolve().parents[2]

log = logging.getLogger("run_local_job")


def local_job(test_input: dict[str, Any]) -> dict[str, Any]:
    job = json.loads(json.dumps(test_input))
    workflow = job["input"]["workflow"]
    for node in workflow.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = CHECKPOINT_NAME
        elif node["class_type"] == "EmptyLatentImage":
            node["inputs"].update(width=128, height=128)
        elif node["class_type"] == "KSampler":
            node["inputs"]["steps"] = 4
    job["id"] = "local-quick-start"
    return job


async def run(job: dict[str, Any]) -> dict[str, Any]:
    worker = Worker(Settings.from_env())  # progress goes to the log
    return await run_job(worker.handle_then_close, job)


def save_outputs(result: dict[str, Any], out_dir: Path) -> int:
    if "error" in result:
        log.error("job failed: %s", result["error"])
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    for image in result["output"]["images"]:
        path = out_dir / image["filename"]
        path.write_bytes(base64.b64decode(image["data"]))
        log.info("wrote %s (%s, from node %s)", path, image["mime_type"], image["node_id"])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out")
    args = parser.parse_args()
    configure_logging()
    job = local_job(json.loads((REPO_ROOT / "test_input.json").read_text()))
    return save_outputs(asyncio.run(run(job)), args.out)


if __name__ == "__main__":
    sys.exit(main())
