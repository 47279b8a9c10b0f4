"""An MCP server in front of an endpoint: its named workflows as tools, for agents.

    comfy-client mcp --endpoint-id abc123                     # RunPod (RUNPOD_API_KEY), over stdio
    comfy-client mcp --base-url http://127.0.0.1:8000/v2/local --transport http --port 8765

Tools (the official `mcp` SDK's low-level server, over stdio or streamable HTTP):
- one per named workflow (`{"list": "workflows"}`, asked once): its input schema is
  the workflow's JSON Schema; an image, video or audio parameter (`contentMediaType`)
  takes a URL, an `s3://` reference, base64, or a local file path the server reads
  and sends;
- `run_workflow`: a raw graph (API or UI format), with input files by URL or path;
- `list_models`: what the endpoint has installed, for choosing model parameters.

A call runs the job through the endpoint (`AsyncEndpoint`: inputs too large for the
request go through the bucket BUCKET_* names, as the command line's), sends the
worker's progress as MCP progress notifications (progress 0-1 of total 1, with the
message), and returns images as image content, other outputs as links (bucket URLs)
or embedded resources (base64), and the seeds used, so the result can be reproduced.
A cancelled call cancels the job on the endpoint. Every failure (bad parameter, model
missing, timeout, unreachable endpoint, wrong key) is a tool error that says what
is wrong. The API key comes from the environment or the command line, never from a
tool argument, and is never in a result or a log line.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import ipaddress
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings

from .contract import FINAL_STATES, OUTPUT_LISTS, JobState
from .endpoint import AsyncEndpoint, EndpointAnswered, EndpointError, JobFailed
from .uploads import RequestTooLarge

log = logging.getLogger("client.mcp")

Progress = Callable[[float, str], Awaitable[None]]
"""(fraction 0-1, message): the worker's progress, for the MCP client."""

POLL_S = 0.5
MEDIA_SCHEMA_KEY = "contentMediaType"
REMOTE_PREFIXES = ("http://", "https://", "s3://", "data:")

RUN_WORKFLOW_SCHEMA = {
    "type": "object",
    "properties": {
        "workflow": {
            "type": "object",
            "description": "The ComfyUI graph: API format (Export (API)) or the editor's saved UI format.",
        },
        "files": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Input files its loaders name: file name -> URL, s3:// reference or local path.",
        },
        "randomize_seeds": {"type": "boolean", "description": "Give every seed a new random value.", "default": False},
    },
    "required": ["workflow"],
    "additionalProperties": False,
}
LIST_MODELS_SCHEMA = {"type": "object", "properties": {}, "additionalProperties": False}
CHECK_WORKFLOW_SCHEMA = {
    "type": "object",
    "properties": {"workflow": RUN_WORKFLOW_SCHEMA["properties"]["workflow"]},  # type: ignore[index]
    "required": ["workflow"],
    "additionalProperties": False,
}


class ToolFailed(Exception):
    """What went wrong, in words for the agent (the tool error's text)."""


class OutOfTime(Exception):
    """The job outlasted the server's timeout (raised while following it)."""


class EndpointTools:
    """The tools of one endpoint."""

    def __init__(self, client: AsyncEndpoint, timeout_s: float, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.timeout_s = timeout_s
        self.clock = clock
        self._workflows: list[dict[str, Any]] | None = None

    # -- the tools -------------------------------------------------------------

    async def list_tools(self) -> list[types.Tool]:
        """The named workflows' tools (when the endpoint answers: else they are asked for
        again at the next listing), then run_workflow, check_workflow and list_models."""
        try:
            workflows = await self.workflows()
        except ToolFailed as failed:
            log.warning("the endpoint's named workflows are not listed: %s", failed)
            workflows = []
        tools = [
            types.Tool(
                name=workflow["name"],
                description=workflow.get("description") or f"Run the endpoint's '{workflow['name']}' workflow.",
                input_schema=workflow["parameters"],
            )
            for workflow in workflows
        ]
        tools.append(
            types.Tool(
                name="run_workflow",
                description="Run a ComfyUI workflow graph on the endpoint and return its outputs.",
                input_schema=RUN_WORKFLOW_SCHEMA,
            )
        )
        tools.append(
            types.Tool(
                name="check_workflow",
                description="Whether the endpoint could run a ComfyUI workflow graph (its nodes, models and "
                "values), without running it; what it lacks otherwise.",
                input_schema=CHECK_WORKFLOW_SCHEMA,
            )
        )
        tools.append(
            types.Tool(
                name="list_models",
                description="The models installed on the endpoint, by folder, and which loader inputs take them.",
                input_schema=LIST_MODELS_SCHEMA,
            )
        )
        return tools

    async def call(self, name: str, arguments: dict[str, Any], progress: Progress) -> types.CallToolResult:
        try:
            if name == "list_models":
                check_arguments(name, arguments, LIST_MODELS_SCHEMA)
                output = await self.run_job({"list": "models"}, progress)
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=json.dumps(output))], structured_content=output
                )
            if name == "check_workflow":
                check_arguments(name, arguments, CHECK_WORKFLOW_SCHEMA)
                output = await self.run_job({**self.raw_workflow_input(arguments), "validate_only": True}, progress)
                text = f"the endpoint can run this workflow ({output.get('nodes')} nodes)"
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=text)], structured_content=output
                )
            if name == "run_workflow":
                check_arguments(name, arguments, RUN_WORKFLOW_SCHEMA)
                job_input = self.raw_workflow_input(arguments)
            else:
                workflow = await self.workflow(name)
                check_arguments(name, arguments, workflow["parameters"])
                job_input = self.named_workflow_input(name, arguments, workflow)
            return self.result(await self.run_job(job_input, progress))
        except ToolFailed as failed:
            return types.CallToolResult(content=[types.TextContent(type="text", text=str(failed))], is_error=True)

    # -- from arguments to a job -------------------------------------------------

    async def workflows(self) -> list[dict[str, Any]]:
        if self._workflows is None:
            answer = await self.run_job({"list": "workflows"}, no_progress)
            self._workflows = list(answer.get("workflows") or [])
        return self._workflows

    async def workflow(self, name: str) -> dict[str, Any]:
        for workflow in await self.workflows():
            if workflow["name"] == name:
                return workflow
        raise ToolFailed(f"unknown tool '{name}'")

    def named_workflow_input(self, name: str, arguments: dict[str, Any], workflow: dict[str, Any]) -> dict[str, Any]:
        properties = workflow["parameters"].get("properties") or {}
        params = {
            key: read_media(value, f"{name}.{key}") if MEDIA_SCHEMA_KEY in (properties.get(key) or {}) else value
            for key, value in arguments.items()
        }
        return {"workflow_name": name, "params": params}

    def raw_workflow_input(self, arguments: dict[str, Any]) -> dict[str, Any]:
        workflow = arguments.get("workflow")
        if not isinstance(workflow, dict):
            raise ToolFailed("run_workflow.workflow: give the workflow graph as a JSON object")
        files = arguments.get("files") or {}
        if not isinstance(files, dict):
            raise ToolFailed("run_workflow.files: give an object of file name -> URL or local path")
        job_input: dict[str, Any] = {"workflow": workflow}
        if files:
            job_input["images"] = [
                {"name": Path(str(file_name)).name, "image": read_media(value, f"run_workflow.files.{file_name}")}
                for file_name, value in files.items()
            ]
        if arguments.get("randomize_seeds"):
            job_input["randomize_seeds"] = True
        return job_input

    # -- running it --------------------------------------------------------------

    async def run_job(self, job_input: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """The job's output once COMPLETED; progress on the way; the job cancelled if the
        call is, or when it outlasts the server's timeout. `ToolFailed` for every way it can
        fail. Followed by the client's `wait`, which rides out a passing failure of a poll."""
        job_id = await self._endpoint(self.client.run, job_input)
        deadline = self.clock() + self.timeout_s
        notified = -1.0  # MCP: each notification's progress must be greater than the last

        async def on_status(status: dict[str, Any]) -> None:
            nonlocal notified
            state, output = status.get("status"), status.get("output")
            output = output if isinstance(output, dict) else {}
            fraction = output.get("progress")
            if state == JobState.IN_PROGRESS and isinstance(fraction, int | float) and fraction > notified:
                notified = float(fraction)
                await progress(notified, str(output.get("message") or "running"))
            if state not in FINAL_STATES and self.clock() > deadline:
                raise OutOfTime

        try:
            try:
                status = await self._endpoint(self.client.wait, job_id, on_status, POLL_S, False)
            except OutOfTime:
                await self._endpoint(self.client.cancel, job_id)
                raise ToolFailed(f"job {job_id} timed out after {self.timeout_s:g} s and was cancelled") from None
        except BaseException as stopped:
            if isinstance(stopped, anyio.get_cancelled_exc_class()):
                with anyio.CancelScope(shield=True):  # the call was cancelled: so is the job
                    await self._cancel_quietly(job_id)
            raise
        if status["status"] != JobState.COMPLETED:
            raise ToolFailed(str(JobFailed(status)))
        return dict(status.get("output") or {})

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await self.client.cancel(job_id)
            log.info("job %s cancelled with the call", job_id)
        except EndpointError as exc:
            log.warning("could not cancel job %s: %s", job_id, exc)

    async def _endpoint(self, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """One endpoint request; its failures as ToolFailed."""
        try:
            return await call(*args)
        except RequestTooLarge as exc:
            raise ToolFailed(f"not sent: {exc}") from None
        except EndpointAnswered as exc:
            raise ToolFailed(http_failure(exc, self.client.base_url)) from None
        except EndpointError as exc:
            raise ToolFailed(str(exc)) from None

    # -- the answer ----------------------------------------------------------------

    @staticmethod
    def result(output: dict[str, Any]) -> types.CallToolResult:
        content: list[Any] = []
        listed = []
        for list_name in OUTPUT_LISTS.values():
            for entry in output.get(list_name) or []:
                content.append(output_content(entry))
                listed.append({key: entry.get(key) for key in ("filename", "node_id", "mime_type", "type")})
        seeds = output.get("seeds") or {}
        summary = {"outputs": listed, "seeds": seeds, "timings": output.get("timings")}
        content.append(types.TextContent(type="text", text=json.dumps({"seeds": seeds, "outputs": listed})))
        return types.CallToolResult(content=content, structured_content=summary)


def check_arguments(tool: str, arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    """The arguments against the tool's input schema; a `ToolFailed` naming the first wrong one
    (a misspelt argument is refused, not ignored)."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(arguments))
    if error is not None:
        where = ".".join([tool, *(str(part) for part in error.absolute_path)])
        raise ToolFailed(f"{where}: {error.message}")


async def no_progress(fraction: float, message: str) -> None:
    return None


def read_media(value: Any, where: str) -> Any:
    """A media value as the worker takes it: URLs and base64 as given, a local path read."""
    if not isinstance(value, str) or value.startswith(REMOTE_PREFIXES):
        return value
    path = Path(value).expanduser()
    if len(value) < 4096 and path.is_file():
        return base64.b64encode(path.read_bytes()).decode()
    if len(value) < 4096 and ("/" in value or "\\" in value):
        raise ToolFailed(f"{where}: no such file: {value}")
    return value  # base64 of the file itself


def output_content(entry: dict[str, Any]) -> Any:
    mime_type = entry.get("mime_type") or "application/octet-stream"
    if entry.get("type") == "base64":
        if entry.get("media") == "image" and mime_type.startswith("image/"):
            return types.ImageContent(type="image", data=entry["data"], mime_type=mime_type)
        blob = types.BlobResourceContents(uri=f"file:///{entry['filename']}", mime_type=mime_type, blob=entry["data"])
        return types.EmbeddedResource(type="resource", resource=blob)
    return types.ResourceLink(type="resource_link", name=entry["filename"], uri=entry["data"], mime_type=mime_type)


def http_failure(exc: EndpointAnswered, base_url: str) -> str:
    if exc.key_refused:
        return f"the endpoint at {base_url} refused the API key (HTTP 401): check RUNPOD_API_KEY or --api-key"
    if exc.status == 404:
        return f"the endpoint at {base_url} does not exist or does not know the job (HTTP 404): {exc.error}"
    return str(exc)


def build_server(tools: EndpointTools) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await tools.list_tools())

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        meta = ctx.meta or {}
        token = meta.get("progress_token") if isinstance(meta, dict) else None

        async def progress(fraction: float, message: str) -> None:
            if token is not None:  # the caller asked for progress
                await ctx.session.send_progress_notification(token, fraction, 1.0, message, ctx.request_id)

        return await tools.call(params.name, dict(params.arguments or {}), progress)

    return Server("comfyui-worker", on_list_tools=list_tools, on_call_tool=call_tool)


async def serve_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


TOKEN_ENV = "COMFY_MCP_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_security(host: str, allowed_hosts: list[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection for every bind address (the SDK turns it on for three literal
    loopback names only): the Host must be a loopback name, the bind address or one of
    `allowed_hosts` (the names clients reach the server by), and so must a browser's Origin."""
    names = ["127.0.0.1", "localhost", "[::1]", *allowed_hosts]
    if host not in ("0.0.0.0", "::", ""):
        names.append(f"[{host}]" if ":" in host else host)
    names = list(dict.fromkeys(names))
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in names],
        allowed_origins=[f"{scheme}://{name}:*" for name in names for scheme in ("http", "https")],
    )


def with_token(app: Any, token: str) -> Any:
    """The ASGI app, answering HTTP 401 to a request without `Authorization: Bearer <token>`."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                headers = [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": f"set Authorization: Bearer <{TOKEN_ENV}>".encode()})
                return
        await app(scope, receive, send)

    return guarded


def http_app(server: Server[Any], host: str, allowed_hosts: list[str], token: str | None) -> Any:
    """The streamable HTTP app: DNS-rebinding protection always, and the token when given."""
    app = server.streamable_http_app(host=host, transport_security=transport_security(host, allowed_hosts))
    return with_token(app, token) if token else app


def serve(args: argparse.Namespace, client: AsyncEndpoint) -> int:
    """`comfy-client mcp`: serve until stdin closes (stdio) or the process is stopped (http).
    Over HTTP beyond loopback it needs a token (COMFY_MCP_TOKEN, never an argument: others
    can read a command line): the server holds the endpoint's key and reads local files named
    in tool arguments."""
    server = build_server(EndpointTools(client, args.timeout_s))
    if args.transport == "stdio":
        anyio.run(serve_stdio, server)
        return 0
    import uvicorn

    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        log.error(
            "--host %s listens beyond this machine: set %s to a secret that clients send as "
            "'Authorization: Bearer <token>'",
            args.host,
            TOKEN_ENV,
        )
        return 2
    app = http_app(server, args.host, args.allowed_host or [], token)
    log.info(
        "MCP over streamable HTTP at http://%s:%d/mcp%s", args.host, args.port, " (token required)" if token else ""
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
