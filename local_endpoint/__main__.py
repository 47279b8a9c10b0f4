"""Run a local RunPod endpoint, and optionally the worker that serves it.

    python -m local_endpoint --port 8000 --worker-command "bash start.sh"

The worker command runs with RUNPOD_WEBHOOK_* pointing here, so the unmodified
`runpod.serverless.start` loop takes jobs, sends progress and results, and gets
cancels exactly as on RunPod. Like RunPod, the worker is replaced (stopped and
started again) when a job result asks for it (refresh_worker), and restarted if
it exits. Clients use http://HOST:PORT/v2/ENDPOINT_ID as their base URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal

from aiohttp import web

from .server import LocalEndpoint, worker_environment

log = logging.getLogger("local_endpoint")


class WorkerSupervisor:
    """Keeps one worker process running; replaces it when asked, as RunPod does."""

    def __init__(self, command: str, env: dict[str, str]):
        self.command = command
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.replace_requested = asyncio.Event()

    async def run(self) -> None:
        while True:
            self.process = await asyncio.create_subprocess_exec(*shlex.split(self.command), env=self.env)
            log.info("worker started (pid %d): %s", self.process.pid, self.command)
            exited = asyncio.ensure_future(self.process.wait())
            replace = asyncio.ensure_future(self.replace_requested.wait())
            await asyncio.wait({exited, replace}, return_when=asyncio.FIRST_COMPLETED)
            replace.cancel()
            if self.replace_requested.is_set():
                self.replace_requested.clear()
                log.info("replacing the worker (refresh_worker)")
                await self.stop()
            else:
                log.warning("worker exited with %s; starting a new one", self.process.returncode)
                await asyncio.sleep(2)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def serve(args: argparse.Namespace) -> None:
    endpoint = LocalEndpoint(endpoint_id=args.endpoint_id, api_key=args.api_key, worker_key=args.worker_key)
    runner = web.AppRunner(endpoint.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    base_url = f"http://{args.host}:{args.port}"
    log.info("RunPod endpoint on %s/v2/%s", base_url, args.endpoint_id)
    supervisor = None
    if args.worker_command:
        supervisor = WorkerSupervisor(
            args.worker_command, {**os.environ, **worker_environment(base_url, endpoint.worker_key)}
        )
        endpoint.on_refresh = supervisor.replace_requested.set
        worker = asyncio.ensure_future(supervisor.run())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    if supervisor is not None:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await supervisor.stop()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="a RunPod endpoint on localhost")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--endpoint-id", default="local")
    parser.add_argument("--api-key", default=os.environ.get("LOCAL_ENDPOINT_API_KEY"), help="require this bearer token")
    parser.add_argument("--worker-command", help="run this worker with RUNPOD_WEBHOOK_* pointing here")
    parser.add_argument(
        "--worker-key",
        default=os.environ.get("LOCAL_ENDPOINT_WORKER_KEY"),
        help="the key workers must send (RUNPOD_AI_API_KEY); random unless given, for a worker started elsewhere",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [local_endpoint] %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
