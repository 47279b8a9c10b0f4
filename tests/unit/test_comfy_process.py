import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

from comfy_worker.comfyui.comfy_process import ComfyProcess, Liveness, wait_until_ready
from comfy_worker.core.errors import ComfyUnavailable
from comfy_worker.core.settings import Settings


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
    assert process.liveness() is Liveness.UNKNOWN
    assert not process.is_dead()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    pid_file.write_text(str(child.pid))
    assert process.liveness() is Liveness.ALIVE
    child.kill()
    time.sleep(0.2)  # not reaped yet: a zombie counts as dead
    assert process.liveness() is Liveness.DEAD
    child.wait()
    assert process.liveness() is Liveness.DEAD
    assert process.is_dead()
    pid_file.write_text("garbage")
    assert process.liveness() is Liveness.DEAD


def test_23_the_comfyui_that_answered_is_lost_once_it_dies_though_a_new_one_runs(tmp_path):
    """start.sh restarts a ComfyUI that died at once, so the PID file names a live process;
    the jobs sent to the one that died must still learn of its death."""
    pid_file = tmp_path / "comfy.pid"
    process = ComfyProcess(pid_file)
    first, second = (subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2))
    try:
        pid_file.write_text(str(first.pid))
        process.note_answered()
        assert not process.lost()
        first.kill()
        first.wait()
        pid_file.write_text(str(second.pid))  # start.sh's new ComfyUI
        assert not process.is_dead()
        assert process.lost()
        process.note_answered()  # the worker connects to the new one
        assert not process.lost()
    finally:
        for child in (first, second):
            child.kill()
            child.wait()


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
    with socket.create_server(("127.0.0.1", 0)) as server:  # this process plays ComfyUI
        host = f"127.0.0.1:{server.getsockname()[1]}"
        settings = Settings(comfy_pid_file=tmp_path / "comfy.pid", ready_poll_interval_s=0.01, comfy_host=host)
        comfy = SilentComfy(answer_after=5)
        await wait_until_ready(comfy, ComfyProcess(settings.comfy_pid_file), settings)
    assert comfy.calls == 6


async def test_live_but_silent_process_times_out(tmp_path):
    settings = Settings(comfy_pid_file=tmp_path / "none.pid", ready_poll_interval_s=0.01, ready_timeout_s=0.05)
    with pytest.raises(ComfyUnavailable, match="did not answer within"):
        await wait_until_ready(SilentComfy(), ComfyProcess(settings.comfy_pid_file), settings)


async def test_a_server_that_is_not_the_started_comfyui_is_refused(tmp_path):
    """Something answers on COMFY_HOST while the started process does not listen, then it exits."""
    with socket.create_server(("127.0.0.1", 0)) as other_program:
        host = f"127.0.0.1:{other_program.getsockname()[1]}"
        started = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(0.5)")
        await asyncio.sleep(0.1)  # until it has exec'd: a child between fork and exec holds our sockets
        (tmp_path / "comfy.pid").write_text(str(started.pid))
        settings = Settings(comfy_pid_file=tmp_path / "comfy.pid", comfy_host=host, ready_poll_interval_s=0.02)
        comfy = SilentComfy(answer_after=0)
        with pytest.raises(ComfyUnavailable, match=f"another program answers at {host}, and the ComfyUI"):
            await wait_until_ready(comfy, ComfyProcess(settings.comfy_pid_file), settings)
        await started.wait()
        assert comfy.calls > 5, "it waited for the started process rather than trusting the answer"
