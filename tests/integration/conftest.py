"""Integration fixtures: one real ComfyUI per test run, and the handler pointed at it."""

from __future__ import annotations

import json
import uuid

import pytest
import runpod

import rp_handler
from comfy_worker.settings import Settings

from .comfyui_server import ComfyServer, start_comfyui


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory) -> ComfyServer:
    server = start_comfyui(
        tmp_path_factory.mktemp("comfyui-base"), ("--preview-method", "latent2rgb", "--preview-size", "256")
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker_settings(comfyui: ComfyServer) -> Settings:
    return Settings.from_env(comfyui.env())


@pytest.fixture
def use_settings(comfyui, monkeypatch):
    """Point the handler at the test ComfyUI with extra settings (environment names)."""

    def use(**env: str) -> Settings:
        settings = Settings.from_env({**comfyui.env(), **env})
        monkeypatch.setattr(rp_handler, "settings", settings)
        return settings

    return use


@pytest.fixture
def progress(monkeypatch):
    """Every progress_update the handler makes, as RunPod would receive it (JSON)."""
    updates: list[dict] = []

    def capture(job, payload):
        updates.append(json.loads(json.dumps(payload)))

    monkeypatch.setattr(runpod.serverless, "progress_update", capture)
    return updates


@pytest.fixture
async def run_job(worker_settings, progress, monkeypatch):
    """Run one job through the handler as RunPod would; returns the handler's result."""
    monkeypatch.setattr(rp_handler, "settings", worker_settings)

    async def run(job_input, job_id: str | None = None):
        return await rp_handler.handler({"id": job_id or f"test-{uuid.uuid4().hex[:8]}", "input": job_input})

    return run


@pytest.fixture
async def clean_after(comfyui):
    """The test's jobs must leave input/, output/ and temp/ as they found them."""
    before = comfyui.job_files()
    yield
    assert comfyui.job_files() == before, "a job left files behind"
