"""The node snapshot: kept on disk, trusted only while it fits this ComfyUI, and a job
refused against it checked again against ComfyUI's own node list."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import pytest

from comfy_worker.comfyui import nodes_snapshot
from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.core.settings import Settings
from tests.support.fake_comfy import OBJECT_INFO, FakeComfy, fake_worker

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}


@pytest.fixture
def comfyui_path(tmp_path) -> Path:
    for folder in ("input", "output", "temp", "custom_nodes/some_node"):
        (tmp_path / "comfyui" / folder).mkdir(parents=True)
    (tmp_path / "comfyui" / "custom_nodes" / "some_node" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (tmp_path / "comfyui" / "comfyui_version.py").write_text('__version__ = "0.3.75"\n')
    return tmp_path / "comfyui"


def test_a_saved_snapshot_loads_while_comfyui_and_its_custom_nodes_are_unchanged(comfyui_path, tmp_path):
    path = tmp_path / "snapshot.json"
    nodes_snapshot.save(path, comfyui_path, OBJECT_INFO)
    assert nodes_snapshot.load(path, comfyui_path) == OBJECT_INFO
    assert [item.name for item in tmp_path.iterdir() if item.name.startswith(".snapshot")] == []  # no partial left

    (comfyui_path / "custom_nodes" / "some_node" / "__pycache__").mkdir()  # written by any start
    assert nodes_snapshot.load(path, comfyui_path) == OBJECT_INFO
    (comfyui_path / "custom_nodes" / "another_node").mkdir()
    assert nodes_snapshot.load(path, comfyui_path) is None
    nodes_snapshot.save(path, comfyui_path, OBJECT_INFO)
    entry = comfyui_path / "custom_nodes" / "some_node" / "__init__.py"
    os.utime(entry, ns=(entry.stat().st_atime_ns, entry.stat().st_mtime_ns + 10**9))  # a new version
    assert nodes_snapshot.load(path, comfyui_path) is None
    nodes_snapshot.save(path, comfyui_path, OBJECT_INFO)
    (comfyui_path / "comfyui_version.py").write_text('__version__ = "0.4.0"\n')
    assert nodes_snapshot.load(path, comfyui_path) is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"fingerprint": "x"}', ""])
def test_an_unreadable_snapshot_is_ignored_with_a_warning(comfyui_path, tmp_path, caplog, content):
    path = tmp_path / "snapshot.json"
    path.write_text(content)
    with caplog.at_level(logging.INFO):
        assert nodes_snapshot.load(path, comfyui_path) is None
    assert str(path) in caplog.text
    assert nodes_snapshot.load(tmp_path / "none.json", comfyui_path) is None


def test_an_unwritable_snapshot_only_warns(comfyui_path, tmp_path, caplog):
    (tmp_path / "blocked").write_text("a file where a folder should be")
    nodes_snapshot.save(tmp_path / "blocked" / "snapshot.json", comfyui_path, OBJECT_INFO)
    assert "cannot be written" in caplog.text


@contextlib.asynccontextmanager
async def running_worker(comfyui_path: Path, tmp_path: Path, comfy: FakeComfy, **settings):
    """A worker on the fake ComfyUI, closed after the block."""
    settings = Settings(
        comfyui_path=comfyui_path,
        comfy_pid_file=tmp_path / "no-pid-file",
        workflows_dir=tmp_path / "workflows",
        **settings,
    )
    worker = fake_worker(settings, comfy, None, None, ComfyProcess(settings.comfy_pid_file))
    try:
        yield worker
    finally:
        await worker.close()


async def test_with_a_snapshot_the_first_job_runs_without_asking_comfyui_for_its_nodes(comfyui_path, tmp_path):
    nodes_snapshot.save(comfyui_path / "worker-object-info.json", comfyui_path, OBJECT_INFO)
    comfy = FakeComfy(comfyui_path)
    async with running_worker(comfyui_path, tmp_path, comfy) as worker:
        result = await worker.handle({"id": "j1", "input": {"workflow": WORKFLOW}})
        assert "error" not in result, result
        assert result["images"], result
        assert "object_info" not in comfy.calls

        # Listing models asks ComfyUI itself: files on a volume come and go.
        listed = await worker.handle({"id": "j2", "input": {"list": "models"}})
        assert listed["models"]["checkpoints"] == ["sd15.safetensors"]
        assert "object_info" in comfy.calls
        comfy.model_files_data["checkpoints"].append("added-later.safetensors")
        listed_again = await worker.handle({"id": "j3", "input": {"list": "models"}})
        assert listed_again["models"]["checkpoints"] == ["sd15.safetensors", "added-later.safetensors"]


async def test_a_node_missing_from_the_snapshot_is_checked_against_comfyui_before_refusing(comfyui_path, tmp_path):
    older = {name: spec for name, spec in OBJECT_INFO.items() if name != "EmptyImage"}
    nodes_snapshot.save(comfyui_path / "worker-object-info.json", comfyui_path, older)
    comfy = FakeComfy(comfyui_path)
    async with running_worker(comfyui_path, tmp_path, comfy) as worker:
        result = await worker.handle({"id": "j1", "input": {"workflow": WORKFLOW}})
        assert "error" not in result, result
        assert result["images"], result
        assert comfy.calls.count("object_info") == 1
        # ComfyUI's answer replaced the stale snapshot, on disk too.
        saved = json.loads((comfyui_path / "worker-object-info.json").read_text())
        assert "EmptyImage" in saved["object_info"]

        unknown = {**WORKFLOW, "3": {"class_type": "NoSuchNode", "inputs": {}}}
        refused = await worker.handle({"id": "j2", "input": {"workflow": unknown}})
        assert refused["error_type"] == "invalid_input"
        assert "NoSuchNode" in refused["error"]
        assert comfy.calls.count("object_info") == 1


async def test_a_refusal_after_the_connection_was_closed_still_asks_comfyui(comfyui_path, tmp_path):
    """As in production: start() learns in one event loop and closes; jobs run in the SDK's."""
    nodes_snapshot.save(comfyui_path / "worker-object-info.json", comfyui_path, OBJECT_INFO)
    comfy = FakeComfy(comfyui_path)
    async with running_worker(comfyui_path, tmp_path, comfy) as worker:
        await worker.start()
        await worker.close()
        unknown = {**WORKFLOW, "3": {"class_type": "NoSuchNode", "inputs": {}}}
        refused = await worker.handle({"id": "j1", "input": {"workflow": unknown}})
        assert refused["error_type"] == "invalid_input", refused
        assert "NoSuchNode" in refused["error"], refused
        assert comfy.calls.count("object_info") == 1


async def test_without_a_snapshot_the_worker_asks_comfyui_and_keeps_its_answer(comfyui_path, tmp_path):
    comfy = FakeComfy(comfyui_path)
    async with running_worker(comfyui_path, tmp_path, comfy) as worker:
        assert "error" not in await worker.handle({"id": "j1", "input": {"workflow": WORKFLOW}})
        assert comfy.calls.count("object_info") == 1
    assert nodes_snapshot.load(comfyui_path / "worker-object-info.json", comfyui_path) == OBJECT_INFO

    comfy = FakeComfy(comfyui_path)
    async with running_worker(comfyui_path, tmp_path, comfy, nodes_snapshot="off") as off:
        assert "error" not in await off.handle({"id": "j2", "input": {"workflow": WORKFLOW}})
        assert comfy.calls.count("object_info") == 1


async def test_an_unknown_node_in_a_job_with_a_comfy_org_key_names_the_api_nodes_setting(comfyui_path, tmp_path):
    comfy = FakeComfy(comfyui_path)
    api_node = {**WORKFLOW, "3": {"class_type": "OpenAIDalle3", "inputs": {}}}
    for api_nodes, hinted in ((False, True), (True, False)):
        settings = {"comfy_api_nodes": api_nodes, "nodes_snapshot": "off"}
        async with running_worker(comfyui_path, tmp_path, comfy, **settings) as worker:
            result = await worker.handle({"id": "j", "input": {"workflow": api_node, "comfy_org_api_key": "sk-x"}})
            assert result["error_type"] == "invalid_input"
            assert "OpenAIDalle3" in result["error"]
            assert ("COMFY_API_NODES=true" in result["error"]) is hinted
            assert "sk-x" not in json.dumps(result)
