"""ComfyUI's process: is it alive, and wait while it starts.

Contract: start.sh writes ComfyUI's PID to COMFY_PID_FILE. `ComfyProcess.liveness`
reads it (a /proc read, no request): ALIVE, DEAD (gone, or a zombie) or UNKNOWN
(no PID file: ComfyUI started by hand). `wait_until_ready` polls ComfyUI's HTTP API
every COMFY_READY_POLL_INTERVAL_S; it returns as soon as ComfyUI answers, and
raises `ComfyUnavailable` as soon as the process is DEAD, or after
COMFY_READY_TIMEOUT_S of a live process that never answers. With no PID file it
cannot tell death from slowness and simply waits up to the timeout.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .comfy_api import ComfyAPI
from .errors import ComfyUnavailable
from .settings import Settings

log = logging.getLogger(__name__)


class Liveness(enum.Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ComfyProcess:
    pid_file: Path

    def liveness(self) -> Liveness:
        try:
            pid = int(self.pid_file.read_text().strip())
        except FileNotFoundError:
            return Liveness.UNKNOWN
        except ValueError:
            return Liveness.DEAD
        try:
            return Liveness.DEAD if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else Liveness.ALIVE
        except psutil.NoSuchProcess:
            return Liveness.DEAD

    def is_dead(self) -> bool:
        return self.liveness() is Liveness.DEAD

    def death_error(self) -> ComfyUnavailable:
        return ComfyUnavailable(
            f"ComfyUI is not running (the process in {self.pid_file} has exited); "
            "its log above says why (often a custom node failing to import, or out of memory)"
        )


async def wait_until_ready(comfy: ComfyAPI, process: ComfyProcess, settings: Settings) -> float:
    """Wait (asynchronously) until ComfyUI answers; returns the seconds waited."""
    started = time.monotonic()
    announced = False
    while True:
        if await comfy.is_responding():
            waited = time.monotonic() - started
            if announced:
                log.info("ComfyUI is ready after %.1f s", waited)
            return waited
        if process.is_dead():
            raise process.death_error()
        waited = time.monotonic() - started
        if waited > settings.ready_timeout_s:
            raise ComfyUnavailable(
                f"ComfyUI at {settings.comfy_host} did not answer within {settings.ready_timeout_s:.0f} s "
                "(COMFY_READY_TIMEOUT_S)"
            )
        if not announced:
            log.info("waiting for ComfyUI at %s", settings.comfy_host)
            announced = True
        await asyncio.sleep(settings.ready_poll_interval_s)
