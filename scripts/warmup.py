"""Run one job through the handler before the worker takes jobs, so the first real
job does not pay for loading models (start.sh runs this when WARMUP_JOB is set).

    python scripts/warmup.py JOB_JSON_FILE

The file is a job like test_input.json ({"input": {...}}). The run is a normal
job: it waits for ComfyUI, and cleans up its files and history afterwards; what
stays is ComfyUI's model cache. Exits non-zero if the job failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("warmup")


async def warm_up(job: dict) -> dict:
    import rp_handler

    rp_handler.configure_logging()
    rp_handler.relay_progress = False  # no RunPod job to report to: progress goes to the log
    try:
        return await rp_handler.handler({"id": "warmup", "input": job["input"]})
    finally:
        await rp_handler.close_comfyui()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[warmup] %(message)s")
    if len(sys.argv) != 2:
        log.error("usage: warmup.py JOB_JSON_FILE")
        return 2
    job = json.loads(Path(sys.argv[1]).read_text())
    started = time.monotonic()
    result = asyncio.run(warm_up(job))
    if "error" in result:
        log.error("warm-up job failed: %s", result["error"])
        return 1
    log.info("warm-up done in %.1f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
