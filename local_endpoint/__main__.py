"""Run a local RunPod endpoint, and optionally the worker that serves it.

    python -m local_endpoint --port 8000 --api-key secret --worker-command "bash start.sh"

The worker command runs with RUNPOD_WEBHOOK_* pointing here (and COMFY_HOST set
from --comfy-host), so the unmodified `runpod.serverless.start` loop takes jobs,
sends progress and results, and gets cancels exactly as on RunPod. Like RunPod,
the worker is replaced (stopped and started again) when a job result asks for it
(refresh_worker), and restarted if it exits: with the exit status and the last
lines it printed in the log, and waiting longer after each quick crash (2 s
doubling up to 60 s) so a broken worker does not spin. Clients use
http://HOST:PORT/v2/ENDPOINT_ID as their base URL; the jobs page is at
http://HOST:PORT/.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import errno
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from comfy_worker.core.settings import Settings
from comfy_worker.transfer.storage import output_store

from .server import LocalEndpoint, worker_environment

log = logging.getLogger("local_endpoint")

FIRST_RESTART_DELAY_S = 2.0
MAX_RESTART_DELAY_S = 60.0
STABLE_AFTER_S = 60.0  # a worker that ran this long was not crash-looping
OUTPUT_LINES_KEPT = 15
# start.sh lets the jobs in flight finish for SHUTDOWN_GRACE_S (25 s), then the worker 5 s
# more, then ComfyUI 10 s: a worker still there after that is killed, its whole process group.
STOP_TIMEOUT_S = 45.0
EXIT_POLL_S = 0.1
OUTPUT_CLOSE_TIMEOUT_S = 5.0  # a process the worker left can hold its output pipe open


class WorkerSupervisor:
    """Keeps one worker process running; replaces it when asked, as RunPod does."""

    def __init__(self, command: str, env: dict[str, str]):
        self.command = command
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.relay: asyncio.Future[None] | None = None  # copies the worker's output, until it closes
        self.replace_requested = asyncio.Event()
        self.last_lines: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        self.quick_exits = 0  # exits in a row, each soon after its start
        self.on_exit: Callable[[str], None] = lambda reason: None  # told why the worker exited
        self.stopping = False  # set when the endpoint stops: no worker is started after it

    async def run(self) -> None:
        delay = FIRST_RESTART_DELAY_S
        while not self.stopping:
            started = time.monotonic()
            self.process = await asyncio.create_subprocess_exec(
                *shlex.split(self.command),
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() can end all of it
            )
            log.info("worker started (pid %d): %s", self.process.pid, self.command)
            self.relay = relay = asyncio.ensure_future(self._relay_output(self.process))
            exited = asyncio.ensure_future(until_exit(self.process))
            replace = asyncio.ensure_future(self.replace_requested.wait())
            await asyncio.wait({exited, replace}, return_when=asyncio.FIRST_COMPLETED)
            replace.cancel()
            if self.replace_requested.is_set():
                self.replace_requested.clear()
                log.info("replacing the worker (refresh_worker)")
                await self.stop()
                await self.output_closed(relay)
                delay = FIRST_RESTART_DELAY_S
                continue
            await self.output_closed(relay)
            ran_s = time.monotonic() - started
            if ran_s > STABLE_AFTER_S:
                delay = FIRST_RESTART_DELAY_S
                self.quick_exits = 0
            else:
                self.quick_exits += 1
            last_line = next((line for line in reversed(self.last_lines) if line.strip()), "(no output)")
            self.on_exit(f"{describe_exit(self.process.returncode)} after {ran_s:.1f} s: {last_line}")
            log.error(
                "worker exited (%s) after %.1f s%s; starting a new one in %.3g s. Its last lines:\n%s",
                describe_exit(self.process.returncode),
                ran_s,
                f", {self.quick_exits} times in a row soon after starting" if self.quick_exits > 1 else "",
                delay,
                "\n".join(f"    {line}" for line in self.last_lines) or "    (no output)",
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_S)
        log.info("the worker is not restarted: the endpoint is stopping")

    async def _relay_output(self, process: asyncio.subprocess.Process) -> None:
        """Copy the worker's output to ours, keeping the last lines to explain an exit."""
        assert process.stdout is not None
        self.last_lines.clear()
        async for raw in process.stdout:
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            self.last_lines.append(raw.decode(errors="replace").rstrip())

    async def output_closed(self, relay: asyncio.Future[None]) -> None:
        """Wait for the worker's output to close, within bounds: a process it left behind (the
        SDK's heartbeat, say) may hold the pipe open forever; that group is killed."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # arrives as the output closes, and the supervisor then starts a worker while the
            # endpoint stops.
            async with asyncio.timeout(OUTPUT_CLOSE_TIMEOUT_S):
                await asyncio.shield(relay)
        except TimeoutError:
            log.warning("the worker's output stayed open after it exited; ending what it left running")
            self._kill_group()
            relay.cancel()

    def _kill_group(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM to the worker (start.sh drains its jobs, then stops ComfyUI); after
        STOP_TIMEOUT_S, SIGKILL to its whole process group, so nothing it started lives on."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(until_exit(self.process), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("the worker did not stop within %g s of SIGTERM; killing it", STOP_TIMEOUT_S)
                self._kill_group()
                await until_exit(self.process)


async def until_exit(process: asyncio.subprocess.Process) -> int:
    """The process's exit status once it has exited. Not `process.wait()`, which also waits for
    its output pipe to close: a child it left running can hold that open forever."""
    while process.returncode is None:  # noqa: ASYNC110 - asyncio has no event for the exit alone
        await asyncio.sleep(EXIT_POLL_S)
    return process.returncode


def describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"status {returncode}"


async def serve(args: argparse.Namespace) -> int:
    try:
        # The worker's own bucket, as it reads it: the page's inputs too large for a request go there.
        upload_bucket = output_store(Settings.from_env())
    except ValueError as error:
        log.error("%s", error)
        return 2
    endpoint = LocalEndpoint(
        endpoint_id=args.endpoint_id, api_key=args.api_key, worker_key=args.worker_key, upload_bucket=upload_bucket
    )
    runner = web.AppRunner(endpoint.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, args.host, args.port).start()
    except OSError as error:
        await runner.cleanup()
        if error.errno == errno.EADDRINUSE:
            log.error(
                "port %d on %s is already in use by another program: choose another with --port", args.port, args.host
            )
            return 2
        raise
    base_url = f"http://{args.host}:{args.port}"
    log.info("RunPod endpoint on %s/v2/%s; the jobs page on %s/", base_url, args.endpoint_id, base_url)
    supervisor = None
    state_dir = Path(tempfile.mkdtemp(prefix=f"local-endpoint-{args.port}-"))
    if args.worker_command:
        env = {**os.environ, **worker_environment(base_url, endpoint.worker_key)}
        if args.comfy_host:
            env["COMFY_HOST"] = args.comfy_host
        # Files of this endpoint's worker alone: two endpoints from one checkout must not
        # share ComfyUI's PID file (stopping one would kill the other's ComfyUI).
        env.setdefault("COMFY_PID_FILE", str(state_dir / "comfyui.pid"))
        supervisor = WorkerSupervisor(args.worker_command, env)
        supervisor.on_exit = endpoint.note_worker_exit
        endpoint.board.on_refresh = supervisor.replace_requested.set
        endpoint.workers_expected = 1
        worker = asyncio.ensure_future(supervisor.run())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await endpoint.close_long_polls()
    if supervisor is not None:
        supervisor.stopping = True
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await supervisor.stop()
        if supervisor.relay is not None:
            await supervisor.output_closed(supervisor.relay)
        log.info("worker stopped")
    await runner.cleanup()
    log.info("stopped")
    shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="a RunPod endpoint on localhost, and a page to watch its jobs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_ENDPOINT_PORT", 8000)))
    parser.add_argument("--endpoint-id", default="local")
    parser.add_argument(
        "--api-key", default=os.environ.get("LOCAL_ENDPOINT_API_KEY"), help="require this bearer token from clients"
    )
    parser.add_argument("--worker-command", help="run this worker with RUNPOD_WEBHOOK_* pointing here")
    parser.add_argument("--comfy-host", help="host:port for the worker's ComfyUI (sets COMFY_HOST for the worker)")
    parser.add_argument(
        "--worker-key",
        default=os.environ.get("LOCAL_ENDPOINT_WORKER_KEY"),
        help="the key workers must send (RUNPOD_AI_API_KEY); random unless given, for a worker started elsewhere",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [local_endpoint] %(message)s")
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
