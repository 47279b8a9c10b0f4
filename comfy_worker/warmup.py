"""Run one job before the worker takes jobs, so the first real job does not pay for
loading models. rp_handler.py runs it (WARMUP_JOB) as soon as ComfyUI answers, in
its own process, so importing the SDK and the worker overlaps ComfyUI's boot
rather than following the warm-up. By hand:

    python -m comfy_worker.warmup JOB_JSON_FILE

The file is a job like test_input.json ({"input": {...}}). The run is a normal
job (its progress goes to the log): it waits for ComfyUI, and cleans up its files
and history afterwards; what stays is ComfyUI's model cache. The command exits
non-zero if the job failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from .core.settings import Settings
from .worker import Worker

log = logging.getLogger("warmup")


WARMUP_JOB_ID = "warmup"
"""The warm-up's job id: its progress goes to the log, never to RunPod (rp_handler.py)."""


async def warm_up(path: Path, worker: Worker) -> bool:
    """Run the job in `path` on the worker, logging how it went; False if it failed (the
    worker serves anyway). handle() waits for ComfyUI like any first job, and turns
    every failure into a result."""
    started = time.monotonic()
    log.info("warming up with %s", path)
    job: dict[str, Any] = json.loads(await asyncio.to_thread(path.read_text))
    result = await worker.handle({"id": WARMUP_JOB_ID, "input": job.get("input")})
    if "error" in result:
        log.error("warm-up job failed: %s; taking jobs anyway", result["error"])
        return False
    log.info("warm-up done in %.1f s", time.monotonic() - started)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # force: importing the SDK's upload helpers has already configured logging its own way.
    logging.basicConfig(level=logging.INFO, format="[warmup] %(message)s", force=True)
    if len(args) != 1:
        log.error("usage: python -m comfy_worker.warmup JOB_JSON_FILE")
        return 2
    worker = Worker(Settings.from_env())

    async def run() -> bool:
        try:
            return await warm_up(Path(args[0]), worker)
        finally:
            await worker.close()

    return 0 if asyncio.run(run()) else 1


if __name__ == "__main__":
    sys.exit(main())
