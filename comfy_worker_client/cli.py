"""Command line: run a workflow on an endpoint with a live progress bar.

    comfy-client run workflow.json --image photo.png --endpoint-id abc123   # RunPod (RUNPOD_API_KEY)
    comfy-client run workflow.json --base-url http://127.0.0.1:8000/v2/local
    comfy-client mcp --endpoint-id abc123      # an MCP server for agents (mcp_server.py)
    comfy-client openapi --endpoint-id abc123 > openapi.json   # the endpoint's OpenAPI document
    comfy-client result <idempotency key> --endpoint-id abc123 # a submit's result, past RunPod's 30 minutes

Each run is sent with an idempotency key (--idempotency-key, else a new one, logged) and
sent again if its answer is lost: the worker runs it once. Shows node, step and overall
percent while the job runs, cancels the job on
Ctrl-C, saves the outputs into --out as <job id>-<node id>-<file name>, and exits
non-zero with the job's error if it fails (1 failed, 2 usage, an unreadable file or a
request too large to send, 130 cancelled). Outside a terminal the progress is written
as plain lines, one per change. Inputs that would pass RunPod's request limit go
through the bucket that BUCKET_ENDPOINT_URL and its keys name, as presigned URLs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from .blocking import EndpointClient
from .contract import JobState
from .endpoint import RUNPOD_API, AsyncEndpoint, EndpointError, JobFailed, new_idempotency_key
from .files import job_input_from_files
from .uploads import RequestTooLarge, UploadBucket

log = logging.getLogger("comfy_worker_client")


BAR_FORMAT = "{l_bar}{bar}| {n:.0f}% [{elapsed}]"


class ProgressBar:
    """Renders the worker's progress payload (docs/job-api.md, Progress): a tqdm bar on a
    terminal; elsewhere (a pipe, a log file) one plain line each time what it says changes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.plain = not self.stream.isatty()
        self.bar = None if self.plain else tqdm(total=100, file=self.stream, bar_format=BAR_FORMAT)
        self.percent = 0.0
        self.message = ""
        self.eta_text = ""
        self._last_line: str | None = None

    def update(self, status: dict[str, Any]) -> None:
        output = status.get("output")
        if status["status"] == JobState.IN_PROGRESS and isinstance(output, dict) and "progress" in output:
            self.percent = round(100 * output["progress"], 1)
            self.message = output.get("message") or "running"
            eta_s = output.get("eta_s")
            self.eta_text = f"about {eta_s:.0f} s left" if isinstance(eta_s, int | float) else ""
        elif status["status"] == JobState.COMPLETED:
            self.percent, self.message, self.eta_text = 100.0, "done", ""
        else:
            self.message, self.eta_text = status["status"].lower().replace("_", " "), ""
        self._render()

    def _render(self) -> None:
        if self.bar is None:
            line = f"{self.percent:5.1f}% {self.message}" + (f" ({self.eta_text})" if self.eta_text else "")
            if line != self._last_line:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_line = line
            return
        self.bar.n = self.percent
        self.bar.set_description(self.message, refresh=False)
        # The time left after the elapsed time, without tqdm's ", " postfix separator.
        eta = self.eta_text.replace("{", "{{").replace("}", "}}")
        self.bar.bar_format = BAR_FORMAT + (f" {eta}" if eta else "")
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def endpoint_arguments(args: argparse.Namespace) -> dict[str, Any] | None:
    """The endpoint --endpoint-id or --base-url names (base_url, api_key, bucket), or None after
    logging why not."""
    api_key = args.api_key or os.environ.get("RUNPOD_API_KEY")
    try:
        bucket = UploadBucket.from_env()
    except ValueError as exc:
        log.error("%s", exc)
        return None
    if args.endpoint_id:
        if not api_key:
            log.error("--endpoint-id needs an API key: set RUNPOD_API_KEY or pass --api-key")
            return None
        return {"base_url": f"{RUNPOD_API}/{args.endpoint_id}", "api_key": api_key, "bucket": bucket}
    return {"base_url": args.base_url, "api_key": api_key, "bucket": bucket}


def mcp(args: argparse.Namespace) -> int:
    from .mcp_server import serve  # the mcp SDK loads only for this command

    endpoint = endpoint_arguments(args)
    return 2 if endpoint is None else serve(args, AsyncEndpoint(**endpoint))


def openapi(args: argparse.Namespace) -> int:
    """Writes the endpoint's OpenAPI document (its worker's answer to `{"list": "openapi"}`)."""
    endpoint = endpoint_arguments(args)
    if endpoint is None:
        return 2
    with EndpointClient(**endpoint) as client:
        job_id = client.run({"list": "openapi"})
        document = dict(client.wait(job_id).get("output") or {})
    document["servers"] = [{"url": endpoint["base_url"]}]  # this endpoint's, for generated clients
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    endpoint = endpoint_arguments(args)
    if endpoint is None:
        return 2
    with EndpointClient(**endpoint) as client:
        return run_job(args, client)


def run_job(args: argparse.Namespace, client: EndpointClient) -> int:
    output_options = {"format": args.format} if args.format else None
    try:
        job_input = job_input_from_files(args.workflow, args.image, timeout_s=args.timeout_s, output=output_options)
    except OSError as exc:
        log.error("cannot read %s: %s", exc.filename or args.workflow, exc.strerror or exc)
        return 2
    except ValueError as exc:  # json.JSONDecodeError included
        log.error("%s is not a workflow or job file: %s", args.workflow, exc)
        return 2
    key = args.idempotency_key or job_input.get("idempotency_key") or new_idempotency_key()
    job_input["idempotency_key"] = key
    try:
        job_id = client.run(job_input, execution_timeout_ms=args.execution_timeout_ms)
    except RequestTooLarge as exc:
        log.error("not sent: %s", exc)
        return 2
    log.info(
        "job %s submitted (idempotency key %s: `comfy-client result %s` fetches its result later)", job_id, key, key
    )
    return follow_and_save(args, client, job_id)


def result(args: argparse.Namespace) -> int:
    """Fetches the result a submit left under its idempotency key, past RunPod's 30 minutes."""
    endpoint = endpoint_arguments(args)
    if endpoint is None:
        return 2
    with EndpointClient(**endpoint) as client:
        job_id = client.run({"result_of": args.key})
        return follow_and_save(args, client, job_id)


def follow_and_save(args: argparse.Namespace, client: EndpointClient, job_id: str) -> int:
    """Shows the job's progress until it ends, then saves its outputs into --out."""
    bar = ProgressBar()
    try:
        final = client.wait(job_id, bar.update, poll_interval_s=args.poll_interval_s)
    except KeyboardInterrupt:
        bar.close()
        client.cancel(job_id)
        log.error("cancelled job %s", job_id)
        return 130
    except JobFailed as failed:
        bar.close()
        log.error("%s", failed)
        return 1
    bar.close()
    for path in client.save_outputs(final.get("output") or {}, args.out, job_id):
        sys.stdout.write(f"{path}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comfy-client", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a workflow and save its outputs")
    run_parser.add_argument(
        "workflow", type=Path, help="a workflow JSON (API or UI format) or a job file like test_input.json"
    )
    run_parser.add_argument("--image", type=Path, action="append", default=[], help="an input file; repeatable")
    add_endpoint_arguments(run_parser)
    run_parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the outputs")
    run_parser.add_argument("--format", choices=["png", "webp", "jpeg"], help="still-image format")
    run_parser.add_argument("--timeout-s", type=float, help="the worker's timeout for this job")
    run_parser.add_argument("--execution-timeout-ms", type=int, help="RunPod's policy.executionTimeout")
    run_parser.add_argument("--poll-interval-s", type=float, default=0.5)
    run_parser.add_argument(
        "--idempotency-key", help="the submit's key (default: a new one); the same key again returns its result"
    )
    result_parser = commands.add_parser("result", help="fetch the result a submit left under its idempotency key")
    result_parser.add_argument("key", help="the idempotency key the submit was sent with")
    add_endpoint_arguments(result_parser)
    result_parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the outputs")
    result_parser.add_argument("--poll-interval-s", type=float, default=0.5)
    openapi_parser = commands.add_parser("openapi", help="print the endpoint's OpenAPI document")
    add_endpoint_arguments(openapi_parser)
    mcp_parser = commands.add_parser("mcp", help="serve the endpoint's workflows as MCP tools, for agents")
    add_endpoint_arguments(mcp_parser)
    mcp_parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="default: stdio")
    mcp_parser.add_argument("--host", default="127.0.0.1", help="http: the address to listen on")
    mcp_parser.add_argument("--port", type=int, default=8765, help="http: the port (the path is /mcp)")
    mcp_parser.add_argument(
        "--allowed-host", action="append", help="http: a host name clients reach the server by (repeat for more)"
    )
    mcp_parser.add_argument("--timeout-s", type=float, default=600, help="a call's limit, then its job is cancelled")
    return parser


def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint-id", help="a RunPod endpoint id (API key from RUNPOD_API_KEY)")
    where.add_argument("--base-url", help="an endpoint base URL, e.g. http://127.0.0.1:8000/v2/local")
    parser.add_argument("--api-key", help="default: RUNPOD_API_KEY")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return {"mcp": mcp, "openapi": openapi, "result": result}.get(args.command, run)(args)
    except EndpointError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
