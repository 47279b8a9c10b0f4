"""ComfyClient against the two shapes of ComfyUI's API: the pinned ComfyUI's (/history,
/queue, /interrupt) and a newer one's (the jobs API and its atomic cancel). Each fake
server speaks one shape and records the routes asked; the client must use the newer
routes where they exist and the old ones otherwise."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from comfy_worker.comfyui.comfy_api import PromptState
from comfy_worker.comfyui.comfy_client import ComfyClient


class ComfyRoutes:
    """A ComfyUI's HTTP API, with or without the jobs routes; prompts' places set by the test."""

    def __init__(self, *, version: str, jobs_api: bool, atomic_cancel: bool):
        self.version = version
        self.running: str | None = None
        self.pending: list[str] = []
        self.history: dict[str, dict[str, Any]] = {}
        self.asked: list[str] = []
        self.interrupted: list[str] = []
        self.posted_prompts: list[dict[str, Any]] = []
        self.app = web.Application(middlewares=[self._record])
        routes = [
            web.get("/system_stats", self.system_stats),
            web.post("/prompt", self.prompt),
            web.get("/history/{id}", self.get_history),
            web.get("/queue", self.queue),
            web.post("/queue", self.delete_queued),
            web.post("/interrupt", self.interrupt),
        ]
        if jobs_api:
            routes += [web.get("/api/jobs", self.jobs), web.get("/api/jobs/{id}", self.job)]
        if atomic_cancel:
            routes.append(web.post("/api/jobs/{id}/cancel", self.cancel))
        self.app.add_routes(routes)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.asked.append(f"{request.method} {request.path}")
        return await handler(request)

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"comfyui_version": self.version}})

    async def prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posted_prompts.append(body)
        return web.json_response({"prompt_id": body.get("prompt_id") or str(uuid.uuid4()), "number": 1})

    async def get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["id"]
        return web.json_response({prompt_id: self.history[prompt_id]} if prompt_id in self.history else {})

    async def queue(self, request: web.Request) -> web.Response:
        running = [[0, self.running, {}, {}, []]] if self.running else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [[1, p, {}, {}, []] for p in self.pending]}
        )

    async def delete_queued(self, request: web.Request) -> web.Response:
        for prompt_id in (await request.json()).get("delete", []):
            if prompt_id in self.pending:
                self.pending.remove(prompt_id)
        return web.Response()

    async def interrupt(self, request: web.Request) -> web.Response:
        prompt_id = (await request.json()).get("prompt_id")
        if prompt_id == self.running:
            self.interrupted.append(prompt_id)
        return web.Response()

    async def jobs(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": [], "pagination": {"offset": 0, "limit": 1, "total": 0, "has_more": False}})

    async def job(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["id"]
        if prompt_id in self.history:
            status = self.history[prompt_id]["status"]
            state = "completed" if status["status_str"] == "success" else "failed"
            return web.json_response({"id": prompt_id, "status": state, "execution_status": status})
        if prompt_id == self.running:
            return web.json_response({"id": prompt_id, "status": "in_progress"})
        if prompt_id in self.pending:
            return web.json_response({"id": prompt_id, "status": "pending"})
        return web.json_response({"error": "Job not found"}, status=404)

    async def cancel(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["id"]
        if prompt_id in self.pending:
            self.pending.remove(prompt_id)
            return web.json_response({"cancelled": True})
        if prompt_id == self.running:
            self.interrupted.append(prompt_id)
            return web.json_response({"cancelled": True})
        return web.json_response({"cancelled": False})


OLD = {"version": "0.3.75", "jobs_api": False, "atomic_cancel": False}
NEWER = {"version": "0.47.1", "jobs_api": True, "atomic_cancel": True}
JOBS_API_ONLY = {"version": "0.6.0", "jobs_api": True, "atomic_cancel": False}  # Dec 2025 to Jun 2026


@pytest.fixture
async def served(request) -> AsyncIterator[tuple[ComfyRoutes, ComfyClient]]:
    comfy = ComfyRoutes(**request.param)
    server = TestServer(comfy.app, host="127.0.0.1")
    await server.start_server()
    client = ComfyClient(str(server.make_url("")))
    try:
        yield comfy, client
    finally:
        await client.close()
        await server.close()


@pytest.mark.parametrize("served", [OLD], indirect=True)
async def test_the_pinned_comfyuis_routes_are_used_where_there_is_no_jobs_api(served):
    comfy, client = served
    comfy.running, comfy.pending = "p-running", ["p-waiting"]
    comfy.history["p-done"] = {"outputs": {}, "status": {"status_str": "success", "completed": True, "messages": []}}

    offers = await client.offers()
    assert (offers.version, offers.jobs_api, offers.atomic_cancel) == ("0.3.75", False, False)
    probe = len(comfy.asked)
    assert await client.prompt_state("p-done") == PromptState("finished", comfy.history["p-done"]["status"])
    assert await client.prompt_state("p-running") == PromptState("running")
    assert await client.prompt_state("p-gone") == PromptState("unknown")
    assert await client.cancel("p-waiting") is True
    assert comfy.pending == []
    assert await client.cancel("p-running") is True
    assert comfy.interrupted == ["p-running"]
    assert await client.cancel("p-done") is False

    asked = set(comfy.asked[probe:])
    assert {"GET /history/p-done", "GET /queue", "POST /queue", "POST /interrupt"} <= asked
    assert not [route for route in asked if "/api/jobs" in route]


@pytest.mark.parametrize("served", [NEWER], indirect=True)
async def test_a_newer_comfyuis_jobs_api_and_atomic_cancel_replace_the_queue_and_history_reads(served):
    comfy, client = served
    comfy.running, comfy.pending = "p-running", ["p-waiting"]
    comfy.history["p-failed"] = {
        "outputs": {},
        "status": {"status_str": "error", "completed": False, "messages": [["execution_error", {"node_id": "3"}]]},
    }

    offers = await client.offers()
    assert (offers.version, offers.jobs_api, offers.atomic_cancel) == ("0.47.1", True, True)
    assert "uses its jobs API, atomic cancel" in offers.describe()
    probe = len(comfy.asked)
    assert await client.prompt_state("p-failed") == PromptState("finished", comfy.history["p-failed"]["status"])
    assert await client.prompt_state("p-waiting") == PromptState("pending")
    assert await client.prompt_state("p-gone") == PromptState("unknown")
    assert await client.cancel("p-waiting") is True
    assert comfy.pending == []
    assert await client.cancel("p-running") is True
    assert comfy.interrupted == ["p-running"]
    assert await client.cancel("p-failed") is False

    assert comfy.asked[probe:] == [
        "GET /api/jobs/p-failed",
        "GET /api/jobs/p-waiting",
        "GET /api/jobs/p-gone",
        "POST /api/jobs/p-waiting/cancel",
        "POST /api/jobs/p-running/cancel",
        "POST /api/jobs/p-failed/cancel",
    ], "one request each, none to /queue, /history or /interrupt"


@pytest.mark.parametrize("served", [JOBS_API_ONLY], indirect=True)
async def test_a_jobs_api_without_the_atomic_cancel_reads_the_state_there_and_cancels_the_old_way(served):
    comfy, client = served
    comfy.running = "p-running"

    assert await client.cancel("p-running") is True
    assert comfy.interrupted == ["p-running"]
    assert "GET /api/jobs/p-running" in comfy.asked
    assert "POST /interrupt" in comfy.asked
    assert "GET /queue" not in comfy.asked


@pytest.mark.parametrize("served", [OLD, NEWER], indirect=True)
async def test_prompts_go_under_a_lowercase_uuid_of_the_clients(served):
    comfy, client = served
    prompt_id = await client.queue_prompt({"1": {"class_type": "X", "inputs": {}}}, {})
    [posted] = comfy.posted_prompts
    assert posted["prompt_id"] == prompt_id == str(uuid.UUID(prompt_id)), "canonical lowercase hyphenated"
