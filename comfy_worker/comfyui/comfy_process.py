"""ComfyUI's process: is it alive, and wait while it starts.

Contract: start.sh writes ComfyUI's PID to COMFY_PID_FILE. `ComfyProcess.liveness`
reads it (a /proc read, no request): ALIVE, DEAD (gone, or a zombie) or UNKNOWN
(no PID file: ComfyUI started by hand). `wait_until_ready` polls ComfyUI's HTTP API
every COMFY_READY_POLL_INTERVAL_S; it returns as soon as ComfyUI answers and the
started process listens (so another program on the port is not taken for it), and
raises `ComfyUnavailable` as soon as the process is DEAD (naming a taken port
when another program answered meanwhile), or after
COMFY_READY_TIMEOUT_S of a live process that never answers. With no PID file it
cannot tell death from slowness and simply waits up to the timeout.

`lost()` says whether the ComfyUI that answered (the one the jobs in flight were sent to)
is gone: start.sh may already have started a new one, whose PID the file then names,
but the prompts died with the old one, and the jobs must say so at once.

`kill` is the last resort for a prompt that ignores interrupts: it ends ComfyUI
(SIGKILL, so the GPU is free at once) and expects start.sh, which supervises it, to
start a new one: for RESTART_WAIT_S the killed process reads as UNKNOWN rather than
DEAD, so the next job waits for the new ComfyUI instead of failing.

The worker tells start.sh two things through files beside the PID file, each holding
a PID: `<pid file>.answered` once that ComfyUI has answered (`note_answered`), and
`<pid file>.ended` just before `kill` ends it. start.sh always restarts a ComfyUI
the worker ended, and one that died after answering; one that died before it ever
answered stays down (a crash at start-up would only repeat). `kill` returns False
when it cannot leave that note or find the process: then nobody will start a new
ComfyUI, and the caller asks RunPod for a new worker instead.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import time
from pathlib import Path

import psutil

from ..core.errors import ComfyUnavailable
from ..core.settings import Settings
from .comfy_api import ComfyAPI

log = logging.getLogger(__name__)


RESTART_WAIT_S = 30.0


class Liveness(enum.Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


class ComfyProcess:
    def __init__(self, pid_file: Path):
        self.pid_file = pid_file
        self._killed: tuple[int, float] | None = None  # (pid, until when a restart is awaited)
        self._answered: int | None = None  # the PID of the ComfyUI that answered last

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:
            return -1

    def liveness(self) -> Liveness:
        pid = self._pid()
        if pid is None:
            return Liveness.UNKNOWN
        if self._killed is not None and self._killed[0] == pid and time.monotonic() < self._killed[1]:
            return Liveness.UNKNOWN  # killed on purpose; start.sh is starting a new one
        try:
            return Liveness.DEAD if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else Liveness.ALIVE
        except (psutil.NoSuchProcess, ValueError):
            return Liveness.DEAD

    @property
    def answered_file(self) -> Path:
        return self.pid_file.with_name(self.pid_file.name + ".answered")

    @property
    def ended_file(self) -> Path:
        return self.pid_file.with_name(self.pid_file.name + ".ended")

    def note_answered(self) -> None:
        """Tell start.sh that this ComfyUI came up: should it die later, it is restarted."""
        pid = self._pid()
        if pid is not None and pid > 0:
            self._answered = pid
            self._write_note(self.answered_file, pid)

    def kill(self) -> bool:
        """End ComfyUI now. True when start.sh will start a new one; False when the PID is
        unknown, the note for start.sh cannot be written, or the process cannot be signalled."""
        pid = self._pid()
        if pid is None or pid <= 0:
            return False
        noted = self._write_note(self.ended_file, pid)
        try:
            os.kill(pid, signal.SIGKILL)  # even without the note: the GPU must be freed
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        if not noted:
            return False
        log.warning("killed ComfyUI (pid %d); start.sh starts a new one", pid)
        self._killed = (pid, time.monotonic() + RESTART_WAIT_S)
        return True

    @staticmethod
    def _write_note(path: Path, pid: int) -> bool:
        try:
            path.write_text(f"{pid}\n")
            return True
        except OSError as exc:
            log.warning("could not write %s for start.sh: %s", path, exc)
            return False

    def listens(self) -> bool | None:
        """Whether the started ComfyUI listens on a TCP port yet; None when that cannot be known."""
        pid = self._pid()
        if pid is None or pid <= 0:
            return None
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return None
        return any(connection.status == psutil.CONN_LISTEN for connection in connections)

    def is_dead(self) -> bool:
        return self.liveness() is Liveness.DEAD

    def lost(self) -> bool:
        """Whether the ComfyUI the jobs were sent to is gone: the file's process is dead, or
        the one that answered died (not on purpose: `kill` awaits its successor) whatever the
        file names now."""
        if self.is_dead():
            return True
        pid = self._answered
        if pid is None or pid == self._pid() or (self._killed is not None and self._killed[0] == pid):
            return False
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def death_error(self) -> ComfyUnavailable:
        return ComfyUnavailable(
            f"ComfyUI is not running (the process in {self.pid_file} has exited); "
            "its log above says why (often a custom node failing to import, or out of memory)"
        )


async def wait_until_ready(comfy: ComfyAPI, process: ComfyProcess, settings: Settings) -> float:
    """Wait (asynchronously) until ComfyUI answers; returns the seconds waited."""
    started = time.monotonic()
    announced = False
    answered_by_another = False
    while True:
        # An answer counts once the started ComfyUI listens: before that, whatever
        # answers is another program (ComfyUI listens on its port or, behind a proxy, on another).
        if await comfy.is_responding():
            if process.listens() is not False:
                process.note_answered()
                waited = time.monotonic() - started
                if announced:
                    log.info("ComfyUI is ready after %.1f s", waited)
                return waited
            if not answered_by_another:
                log.warning("something answers at %s before the started ComfyUI listens", settings.comfy_host)
                answered_by_another = True
        if process.is_dead():
            if answered_by_another:
                raise ComfyUnavailable(
                    f"another program answers at {settings.comfy_host}, and the ComfyUI in {process.pid_file} "
                    "has exited (it cannot listen on a taken port): stop that program or set COMFY_HOST to a free port"
                )
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
