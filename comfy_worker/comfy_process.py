"""Readiness: wait for ComfyUI while its process lives, fail at once when it has died.

Contract: start.sh writes ComfyUI's PID to COMFY_PID_FILE. `wait_until_ready`
polls ComfyUI's HTTP API every COMFY_READY_POLL_INTERVAL_S; it returns as soon as
ComfyUI answers, and raises `ComfyUnavailable` as soon as that PID is gone (or a
zombie), or after COMFY_READY_TIMEOUT_S of a live process that never answers. With
no PID file (ComfyUI started by hand) it cannot tell death from slowness and
simply waits up to the timeout.

`ComfyConnection.open` does that wait once per worker and keeps what every later
job reuses: the client (its connections) and the output node classes.
`ensure_alive` is the per-job check, a /proc read, no request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .comfy_client import ComfyClient
from .errors import ComfyUnavailable
from .execution import output_node_classes
from .settings import Settings

log = logging.getLogger(__name__)


def comfy_process_alive(pid_file: Path) -> bool | None:
    """True/False for the process named in pid_file; None when there is no PID file."""
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def death_message(settings: Settings) -> str:
    return (
        f"ComfyUI is not running (the process in {settings.comfy_pid_file} has exited); "
        "its log above says why (often a custom node failing to import, or out of memory)"
    )


async def wait_until_ready(client: ComfyClient, settings: Settings) -> float:
    """Block (asynchronously) until ComfyUI answers; returns the seconds waited."""
    started = time.monotonic()
    announced = False
    while True:
        if await client.is_responding():
            waited = time.monotonic() - started
            if announced:
                log.info("ComfyUI is ready after %.1f s", waited)
            return waited
        if comfy_process_alive(settings.comfy_pid_file) is False:
            raise ComfyUnavailable(death_message(settings))
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


@dataclass
class ComfyConnection:
    """What jobs share: a ready client and the output node classes of this ComfyUI."""

    client: ComfyClient
    output_classes: frozenset[str]
    loop: asyncio.AbstractEventLoop
    settings: Settings

    @classmethod
    async def open(cls, settings: Settings) -> ComfyConnection:
        client = ComfyClient(settings.comfy_http_url)
        try:
            await wait_until_ready(client, settings)
            output_classes = output_node_classes(await client.object_info())
            await client.connect_events()
        except BaseException:
            await client.close()
            raise
        return cls(client, output_classes, asyncio.get_running_loop(), settings)

    def is_alive(self) -> bool | None:
        return comfy_process_alive(self.settings.comfy_pid_file)

    def ensure_alive(self) -> None:
        if self.is_alive() is False:
            raise ComfyUnavailable(death_message(self.settings))
