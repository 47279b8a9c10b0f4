import asyncio
import os
import subprocess
import sys
import time

import pytest

from comfy_worker.comfy_process import ComfyProcess, Liveness, wait_until_ready
from comfy_worker.errors import ComfyUnavailable
from comfy_worker.settings import Settings


class SilentComfy:
    """A ComfyUI that never answers."""

    def __init__(self, answer_after: int | None = None):
        self.calls = 0
        self.answer_after = answer_after

    async def is_responding(self) -> bool:
        self.calls += 1
        return self.answer_after is not None and self.calls > self.answer_after


def test_process_states(tmp_path):
    pid_file = tmp_path / "comfy.pid"
    process = ComfyProcess(pid_file)
    assert process.liveness() is Liveness.UNKNOWN and not process.is_dead()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    pid_file.write_text(str(child.pid))
    assert process.liveness() is Liveness.ALIVE
    child.kill()
    time.sleep(0.2)  # not reaped yet: a zombie counts as dead
    assert process.liveness() is Liveness.DEAD
    child.wait()
    assert process.liveness() is Liveness.DEAD and process.is_dead()
    pid_file.write_text("garbage")
    assert process.liveness() is Liveness.DEAD


async def test_fails_at_once_when_the_process_is_dead(tmp_path):
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await child.wait()
    (tmp_path / "comfy.pid").write_text(str(child.pid))
    settings = Settings(comfy_pid_file=tmp_path / "comfy.pid", ready_timeout_s=60)
    started = time.monotonic()
    with pytest.raises(ComfyUnavailable, match="has exited"):
        await wait_until_ready(SilentComfy(), ComfyProcess(settings.comfy_pid_file), settings)
    assert time.monotonic() - started < 1


async def test_waits_while_alive_then_returns(tmp_path):
    (tmp_path / "comfy.pid").write_text(str(os.getpid()))
    settings = Settings(comfy_pid_file=tmp_path / "comfy.pid", ready_poll_interval_s=0.01)
    comfy = SilentComfy(answer_after=5)
    await wait_until_ready(comfy, ComfyProcess(settings.comfy_pid_file), settings)
    assert comfy.calls == 6


async def test_live_but_silent_process_times_out(tmp_path):
    settings = Settings(comfy_pid_file=tmp_path / "none.pid", ready_poll_interval_s=0.01, ready_timeout_s=0.05)
    with pytest.raises(ComfyUnavailable, match="did not answer within"):
        await wait_until_ready(SilentComfy(), ComfyProcess(settings.comfy_pid_file), settings)
