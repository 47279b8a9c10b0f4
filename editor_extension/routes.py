"""The bridge's HTTP routes on ComfyUI's own server, under /runpod/:

    GET  /runpod/settings        {"endpoint_id", "base_url", "has_key"} (never the key)
    POST /runpod/settings        {"endpoint_id"?, "base_url"?, "api_key"?}: saved (file mode 600)
    POST /runpod/run             {"prompt": <the API graph graphToPrompt gives>, "workflow"?: <its UI
                                 graph, which the saved images carry>, "preview"?: bool,
                                 "execution_timeout_s"?: seconds (RunPod's policy.executionTimeout;
                                 0 or absent: the endpoint's own)}
                                 -> {"job_id", "files", "uploaded"}: the files its loaders name in the
                                 local input folder travel as the job's `images`; when they would pass
                                 RunPod's limit, the largest go through the bucket BUCKET_* names (as for
                                 the worker and the client; boto3 needed) as presigned URLs ("uploaded")
    GET  /runpod/status/{id}     the endpoint's /status; once COMPLETED, the outputs written into the
                                 local output folder (plain file names, never outside it), listed in
                                 "saved" as ComfyUI's /view names them; once FAILED or TIMED_OUT,
                                 "advice": what the editor's user can do. A run that ends is added to
                                 ComfyUI's queue history (`queue_history.py`), for the Queue panel
    POST /runpod/cancel/{id}     the job cancelled on the endpoint
    POST /runpod/check           {"prompt", "workflow"?} -> {"valid", "problems": [{"node_id", "field",
                                 "problem"}]}: the worker's own answer to a validate-only job (unknown
                                 node types with their package, values such as models it does not have)



They hold a key, so each refuses, with HTTP 403, a request from a page that is not this
ComfyUI's own (`foreign_request`); a `BridgeError` becomes `{"error", "node_ids"?}` with its status.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from .bridge import Bridge
from .graph import BridgeError

log = logging.getLogger("runpod_run")


def foreign_request(request: web.Request, own_hosts: frozenset[str]) -> str | None:
    """Why a request may come from a page that is not this ComfyUI's own, or None.

    The routes hold a key, so they answer only a Host that cannot be a DNS-rebound name (an IP
    literal, `localhost`, or a name ComfyUI was told it serves: `own_hosts`), and only a
    same-origin page (an Origin, when the browser sends one, equal to the Host). ComfyUI's own
    origin check compares the two only for loopback names, which a rebound name is not."""
    host = request.headers.get("Host", "")
    name = (urlparse(f"//{host}").hostname or "").lower()
    if not name or not (is_ip_literal(name) or name == "localhost" or name in own_hosts):
        return f"the RunPod routes answer only this ComfyUI's own address, not the host name {name or '(none)'!r}"
    origin = request.headers.get("Origin")
    if origin is not None and urlparse(origin).netloc.lower() != host.lower():
        return "the RunPod routes answer only pages served by this ComfyUI (a request from another origin)"
    return None


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def own_host_names(listen: str | None, env: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The host names this ComfyUI serves: the names in its --listen, and RUNPOD_RUN_ALLOWED_HOSTS
    (comma-separated, for a name a reverse proxy serves it under)."""
    names = [*(listen or "").split(","), *env.get("RUNPOD_RUN_ALLOWED_HOSTS", "").split(",")]
    return frozenset(name.strip().lower() for name in names if name.strip())


def routes(bridge: Bridge, own_hosts: frozenset[str] = frozenset()) -> list[web.RouteDef]:
    """The /runpod/ routes; each refuses a request from a page that is not this ComfyUI's own
    (`foreign_request`) with HTTP 403."""

    def guarded(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def guard(request: web.Request) -> web.Response:
            refused = foreign_request(request, own_hosts)
            if refused is not None:
                log.warning("refused %s %s: %s", request.method, request.path, refused)
                return web.json_response({"error": refused}, status=403)
            return await handler(request)

        return guard

    async def answer(work: Any) -> web.Response:
        try:
            return web.json_response(await work)
        except BridgeError as error:
            nodes = {"node_ids": error.node_ids} if error.node_ids else {}
            return web.json_response({"error": str(error), **nodes}, status=error.status)

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            parsed = await request.json()
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {}

    async def get_settings(request: web.Request) -> web.Response:
        return web.json_response(bridge.public_settings())

    async def post_settings(request: web.Request) -> web.Response:
        async def save() -> dict[str, Any]:
            return bridge.save_settings(await body(request))

        return await answer(save())

    async def run(request: web.Request) -> web.Response:
        given = await body(request)
        timeout_s, workflow = given.get("execution_timeout_s"), given.get("workflow")
        return await answer(bridge.run(given.get("prompt"), given.get("preview") is True, timeout_s, workflow))

    async def status(request: web.Request) -> web.Response:
        return await answer(bridge.status(request.match_info["job_id"]))

    async def cancel(request: web.Request) -> web.Response:
        return await answer(bridge.cancel(request.match_info["job_id"]))

    async def check(request: web.Request) -> web.Response:
        given = await body(request)
        return await answer(bridge.check(given.get("prompt"), given.get("workflow")))

    return [
        web.get("/runpod/settings", guarded(get_settings)),
        web.post("/runpod/settings", guarded(post_settings)),
        web.post("/runpod/run", guarded(run)),
        web.get("/runpod/status/{job_id}", guarded(status)),
        web.post("/runpod/cancel/{job_id}", guarded(cancel)),
        web.post("/runpod/check", guarded(check)),
    ]
