"""Run one job before the worker takes jobs, so the first real job does not pay for
loading models (start.sh runs this when WARMUP_JOB is set).

    python -m comfy_worker.warmup JOB_JSON_FILE

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
from typing import Any

from .settings import Settings
from .worker import Worker

log = logging.getLogger("warmup")


async def warm_up(job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    # handle() waits for ComfyUI like any first job, and turns every failure into a result.
    return await Worker(settings).handle_then_close({"id": "warmup", "input": job.get("input")})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # force: importing the SDK's upload helpers has already configured logging its own way.
    logging.basicConfig(level=logging.INFO, format="[warmup] %(message)s", force=True)
    if len(args) != 1:
        log.error("usage: python -m comfy_worker.warmup JOB_JSON_FILE")
        return 2
    job = json.loads(Path(args[0]).read_text())
    started = time.monotonic()
    result = asyncio.run(warm_up(job, Settings.from_env()))
    if "error" in result:
        log.error("warm-up job failed: %s", result["error"])
        return 1
    log.info("warm-up done in %.1f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
