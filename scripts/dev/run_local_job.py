"""Run a job through the worker against the local ComfyUI and save its outputs.

    scripts/dev/run_local_job.py [--job my_job.json] [--out out]

The job goes through the RunPod SDK's own job runner (`run_job`, what
`python rp_handler.py --test_input ...` calls), then every output file (base64 or
URL) is written to --out as `<job id>-<node id>-<file name>`, so runs never
overwrite each other. Without --job it runs test_input.json's txt2img on the local
tiny checkpoint, changed so it finishes in seconds on a CPU: the checkpoint is the
generated noise model, the image is 128x128 and the sampler takes 4 steps. A --job
file runs as written: a job (`{"input": {...}}`, as for --test_input) or a bare
workflow (API or UI format), as `comfy-client run` takes them. A file that cannot be
read and Ctrl-C end it with one line, exit status 2 and 130.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

from make_tiny_checkpoint import CHECKPOINT_NAME  # beside this script
from runpod.serverless.modules.rp_job import run_job

from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from comfy_worker_client import job_input_from_files, output_file_name, save_outputs
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
    return job


async def run(job: dict[str, Any]) -> dict[str, Any]:
    worker = Worker(Settings.from_env())  # progress goes to the log
    return await run_job(worker.handle_then_close, job)


def save_result(result: dict[str, Any], job_id: str, out_dir: Path) -> int:
    if "error" in result:
        log.error("job failed: %s", result["error"])
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    for _, path in asyncio.run(save_outputs(result["output"], lambda entry: out_dir / output_file_name(job_id, entry))):
        log.info("wrote %s", path)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, help='a job file ({"input": ...}); default: the tiny txt2img')
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out")
    args = parser.parse_args()
    configure_logging()
    if args.job:
        try:
            job = {"input": job_input_from_files(args.job)}
        except OSError as error:
            log.error("--job %s cannot be read: %s", args.job, error.strerror)
            return 2
        except ValueError as error:
            log.error("--job %s is not JSON: %s", args.job, error)
            return 2
    else:
        job = local_job(json.loads((REPO_ROOT / "test_input.json").read_text()))
    job["id"] = f"local-{uuid.uuid4().hex[:8]}"
    try:
        return save_result(asyncio.run(run(job)), job["id"], args.out)
    except KeyboardInterrupt:
        log.error("stopped (Ctrl-C)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
