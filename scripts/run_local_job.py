"""Run test_input.json's txt2img through the handler, on the local tiny checkpoint.

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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
TINY_CHECKPOINT = "tiny-random-sd15-noise.safetensors"

log = logging.getLogger("run_local_job")


def local_job(test_input: dict) -> dict:
    job = json.loads(json.dumps(test_input))
    workflow = job["input"]["workflow"]
    for node in workflow.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = TINY_CHECKPOINT
        elif node["class_type"] == "EmptyLatentImage":
            node["inputs"].update(width=128, height=128)
        elif node["class_type"] == "KSampler":
            node["inputs"]["steps"] = 4
    job["id"] = "local-quick-start"
    return job


async def run(job: dict) -> dict:
    from runpod.serverless.modules.rp_job import run_job

    import rp_handler

    try:
        return await run_job(rp_handler.handler, job)
    finally:
        await rp_handler.close_comfyui()


def save_outputs(result: dict, out_dir: Path) -> int:
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
    import rp_handler

    rp_handler.configure_logging()
    rp_handler.relay_progress = False  # no RunPod job to report to: progress goes to the log
    job = local_job(json.loads((REPO_ROOT / "test_input.json").read_text()))
    return save_outputs(asyncio.run(run(job)), args.out)


if __name__ == "__main__":
    sys.exit(main())
