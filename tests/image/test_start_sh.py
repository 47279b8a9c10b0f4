"""start.sh end to end on the CPU: ComfyUI comes up with the image's flags, the warm-up
runs when asked, a job succeeds through the SDK's local mode, and ComfyUI is stopped
when the worker exits."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.models.prefetch import cached_fraction
from comfy_worker_client import EndpointClient, JobFailed
from tests.support.comfyui_server import PYTHON, comfyui_tree, free_port
from tests.support.local_endpoint import API_KEY, running_endpoint
from tests.support.page_cache import evict
from tests.support.servers import wait_until
from tests.support.workflows import TINY_CHECKPOINT as CHECKPOINT_NAME
from tests.support.workflows import txt2img

from .conftest import REPO_ROOT


def watch_comfyui(pid_file: Path, seen: dict, stop: threading.Event) -> None:
    """Record the ComfyUI process's arguments and whether it maps tcmalloc, while it runs."""
    while not stop.is_set():
        try:
            proc = Path(f"/proc/{int(pid_file.read_text())}")
            maps = (proc / "maps").read_text()
            if "python" in maps:
                seen["tcmalloc"] = "libtcmalloc" in maps
                seen["args"] = (proc / "cmdline").read_text().split("\0")
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)


def tcmalloc_installed() -> bool:
    return "libtcmalloc.so" in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout


def test_start_sh_runs_comfyui_warmup_and_a_job(tmp_path):
    base = comfyui_tree(tmp_path / "comfyui")
    pid_file = tmp_path / "comfyui.pid"
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps({"input": {"workflow": txt2img(steps=1, seed=11)}}))
    job = {"input": {"workflow": txt2img(steps=2, seed=12)}}
    env = {
        **os.environ,
        "COMFYUI_PATH": str(base),
        "COMFY_HOST": f"127.0.0.1:{free_port()}",
        "COMFY_PID_FILE": str(pid_file),
        "PYTHON": str(PYTHON),
        "COMFY_EXTRA_ARGS": f"--cpu --base-directory {base}",
        "WARMUP_JOB": str(warmup),
        "VOLUME_MODELS_DIR": str(tmp_path / "no-volume" / "models"),
    }
    checkpoint = (base / "models" / "checkpoints" / CHECKPOINT_NAME).resolve()
    evict(checkpoint)
    seen: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_comfyui, args=(pid_file, seen, stop))
    watcher.start()
    try:
        result = subprocess.run(
            ["bash", str(REPO_ROOT / "start.sh"), "--test_input", json.dumps(job)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        stop.set()
        watcher.join()
    log = result.stdout + result.stderr

    assert result.returncode == 0, log[-3000:]
    args = " ".join(seen["args"])
    for flag in (
        "--disable-auto-launch",
        "--log-stdout",
        "--preview-method latent2rgb",
        "--preview-size 256",
        "--extra-model-paths-config",
        "--cpu",
    ):
        assert flag in args
    assert "warm-up done" in log
    assert "Traceback" not in log, "a clean first job (the in-memory database printed sqlite tracebacks)"
    assert f"[prefetch] 1 model file(s) from WARMUP_JOB {warmup}" in log
    # The prefetch runs at idle priority: on a busy machine the job may end before it does.
    handled = ("[prefetch] read 1 file(s)", "already cached 1", "the prefetch was still reading")
    assert any(said in log for said in handled), "the warm-up's checkpoint was handled"
    assert cached_fraction(checkpoint) > 0.95
    assert "Job local_test completed successfully" in log
    comfy_pid = int(pid_file.read_text())
    assert not psutil.pid_exists(comfy_pid) or psutil.Process(comfy_pid).status() == psutil.STATUS_ZOMBIE
    assert sorted(p.name for p in (base / "output").iterdir()) == []  # both jobs cleaned up
    if tcmalloc_installed():
        assert seen.get("tcmalloc") is True, "tcmalloc is installed but was not preloaded into ComfyUI"
        assert "preloading" in log
    else:
        assert "tcmalloc not installed" in log


def fake_comfyui(tmp_path: Path, main_py: str) -> dict[str, str]:
    """start.sh's environment around a stand-in ComfyUI (its main.py) that never answers HTTP."""
    base = tmp_path / "fake-comfyui"
    base.mkdir()
    (base / "main.py").write_text(main_py)
    return {
        **os.environ,
        "COMFYUI_PATH": str(base),
        "COMFY_HOST": f"127.0.0.1:{free_port()}",
        "COMFY_PID_FILE": str(tmp_path / "comfyui.pid"),
        "PYTHON": str(PYTHON),
        "VOLUME_MODELS_DIR": str(tmp_path / "no-volume" / "models"),
    }


def live_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        return pid if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE else None
    except (OSError, ValueError, psutil.NoSuchProcess):
        return None


@pytest.mark.parametrize("how", ["ended by the worker", "died after answering"])
def test_start_sh_starts_a_new_comfyui_however_young_when_the_worker_ended_it_or_it_had_answered(tmp_path, how):
    # A young ComfyUI (seconds old), as for the first job after a cold start.
    env = {**fake_comfyui(tmp_path, "import time\ntime.sleep(600)\n"), "TMPDIR": str(tmp_path)}
    pid_file = Path(env["COMFY_PID_FILE"])
    start_sh = subprocess.Popen(["bash", str(REPO_ROOT / "start.sh")], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: live_pid(pid_file) is not None, 20, "ComfyUI's PID")
        first = live_pid(pid_file)
        process = ComfyProcess(pid_file)
        if how == "ended by the worker":
            assert process.kill(), "start.sh will start a new one"  # what the worker does to a stuck node
        else:
            process.note_answered()  # what the worker does once ComfyUI answers
            os.kill(first, 9)  # a crash: out of memory, say
        wait_until(lambda: live_pid(pid_file) not in (None, first), 20, "a new ComfyUI")
        assert start_sh.poll() is None, "start.sh and its worker keep running"
    finally:
        start_sh.terminate()
        _, stderr = start_sh.communicate(timeout=30)
    assert "starting a new one" in stderr.decode()
    assert live_pid(pid_file) is None, "start.sh stops ComfyUI when it exits"
    assert not list(tmp_path.glob("model-cache-paths.*")), "start.sh removes its paths file"
    assert not list(tmp_path.glob("comfyui.pid.*")), "and the notes between it and the worker"


def test_start_sh_leaves_a_comfyui_that_dies_while_starting_down(tmp_path):
    env = fake_comfyui(tmp_path, "raise SystemExit(3)\n")
    job = json.dumps({"input": {"workflow": txt2img()}})
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "start.sh"), "--test_input", job],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "before it ever answered; not restarting it" in result.stderr
    assert result.returncode != 0, "the worker's local job failed: ComfyUI is not running"
    assert "ComfyUI is not running" in result.stdout + result.stderr, "the job names the cause"


def test_start_sh_refuses_a_comfy_host_another_program_holds(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        env = {**fake_comfyui(tmp_path, "raise SystemExit('must not start')\n"), "TMPDIR": str(tmp_path)}
        env["COMFY_HOST"] = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run(
            ["bash", str(REPO_ROOT / "start.sh"), "--test_input", "{}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"COMFY_HOST {env['COMFY_HOST']} is already in use by another program" in result.stderr
    assert not (tmp_path / "comfyui.pid").exists(), "no ComfyUI was started"
    assert not list(tmp_path.glob("model-cache-paths.*")), "and no file is left behind"


def start_sh_endpoint_env(tmp_path: Path, grace_s: int) -> dict[str, str]:
    base = comfyui_tree(tmp_path / "comfyui")
    return {
        "COMFYUI_PATH": str(base),
        "COMFY_HOST": f"127.0.0.1:{free_port()}",
        "PYTHON": str(PYTHON),
        "COMFY_EXTRA_ARGS": f"--cpu --base-directory {base}",
        "VOLUME_MODELS_DIR": str(tmp_path / "no-volume" / "models"),
        "PREFETCH": "off",
        "SHUTDOWN_GRACE_S": str(grace_s),
    }


def start_sh_pid(log_file: Path) -> int:
    """The PID of the worker (start.sh) the local endpoint started last."""
    return int(log_file.read_text().rpartition("worker started (pid ")[2].partition(")")[0])


def step_of(client: EndpointClient, job_id: str) -> int:
    return int((client.status(job_id).get("output") or {}).get("step") or 0)


def test_sigterm_lets_the_jobs_in_flight_finish_then_stops_comfyui(tmp_path):
    """N2: RunPod scaling a worker down sends SIGTERM. The worker takes no new job and
    finishes the running one and the one queued behind it while ComfyUI keeps running;
    ComfyUI stops after the worker, and start.sh exits last."""
    log_file = tmp_path / "endpoint.log"
    with running_endpoint(start_sh_endpoint_env(tmp_path, grace_s=300), log_file, "bash start.sh", 180) as base_url:
        client = EndpointClient(base_url, API_KEY)
        running = client.run({"workflow": txt2img(steps=40, seed=31)})
        queued = client.run({"workflow": txt2img(steps=2, seed=32)})
        wait_until(lambda: step_of(client, running) >= 1, 120, "the first job's sampler")
        start_sh = psutil.Process(start_sh_pid(log_file))
        comfyui = comfyui_of(start_sh)
        start_sh.send_signal(signal.SIGTERM)

        finals = [client.wait(job_id, poll_interval_s=0.1) for job_id in (running, queued)]
        wait_until(
            lambda: not start_sh.is_running() or start_sh.status() == psutil.STATUS_ZOMBIE, 60, "start.sh's exit"
        )
        log = log_file.read_text()

    assert [final["status"] for final in finals] == ["COMPLETED", "COMPLETED"], [f.get("output") for f in finals]
    assert "the worker finishes its jobs in flight" in log
    assert comfyui
    assert not any(process.is_running() and process.status() != psutil.STATUS_ZOMBIE for process in comfyui)


def comfyui_of(start_sh: psutil.Process) -> list[psutil.Process]:
    return [child for child in start_sh.children() if "main.py" in " ".join(child.cmdline())]


@contextmanager
def long_job_through_start_sh(
    tmp_path: Path, grace_s: int, seed: int
) -> Iterator[tuple[EndpointClient, str, psutil.Process]]:
    """start.sh behind the local endpoint, running a 400-step job (sampling already): the
    client, the job's id, and start.sh's process."""
    log_file = tmp_path / "endpoint.log"
    with running_endpoint(start_sh_endpoint_env(tmp_path, grace_s), log_file, "bash start.sh", 180) as base_url:
        client = EndpointClient(base_url, API_KEY)
        job_id = client.run({"workflow": txt2img(steps=400, seed=seed)})
        wait_until(lambda: step_of(client, job_id) >= 1, 120, "the sampler")
        yield client, job_id, psutil.Process(start_sh_pid(log_file))


def test_a_job_that_outlasts_the_shutdown_grace_fails_naming_the_shutdown(tmp_path):
    with long_job_through_start_sh(tmp_path, grace_s=2, seed=33) as (client, job_id, start_sh):
        start_sh.send_signal(signal.SIGTERM)
        with pytest.raises(JobFailed) as info:
            client.wait(job_id, poll_interval_s=0.1)

    status = info.value.status
    assert status["output"]["error_type"] == "worker_shut_down", status
    assert "SHUTDOWN_GRACE_S" in status["error"]
    assert "send the job again" in status["error"]


def test_23_a_comfyui_killed_mid_job_is_named_though_start_sh_starts_a_new_one(tmp_path):
    with long_job_through_start_sh(tmp_path, grace_s=5, seed=34) as (client, job_id, start_sh):
        [comfyui] = comfyui_of(start_sh)
        comfyui.kill()  # out of memory, say
        with pytest.raises(JobFailed) as info:
            client.wait(job_id, poll_interval_s=0.1)

    status = info.value.status
    assert status["output"]["error_type"] == "comfyui_unavailable", status
    assert "ComfyUI died during the job" in status["error"], status["error"]
