"""The node snapshot against the real ComfyUI: a worker that asked ComfyUI for its nodes
keeps them, and the next worker runs its first job on them without asking."""

from __future__ import annotations

import base64
import json

from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from tests.support.workflows import txt2img

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def counting_object_info(worker: Worker) -> list[str]:
    """Record each GET /object_info the worker's client makes."""
    calls: list[str] = []
    api = worker.comfyui.api
    read = api.object_info

    async def object_info():
        calls.append("object_info")
        return await read()

    api.object_info = object_info  # type: ignore[method-assign]
    return calls


async def test_the_next_worker_runs_its_first_job_on_the_saved_node_list(comfyui, tmp_path):
    snapshot = tmp_path / "object-info.json"
    settings = Settings.from_env({**comfyui.env(), "NODES_SNAPSHOT": str(snapshot)})

    first = Worker(settings)
    first_calls = counting_object_info(first)
    try:
        result = await first.handle({"id": "snap-1", "input": {"workflow": txt2img(seed=1)}})
        assert "error" not in result, result
        assert first_calls == ["object_info"]
        listed = await first.comfyui.api.object_info()
    finally:
        await first.close()
    saved = json.loads(snapshot.read_text())
    assert saved["object_info"].keys() == listed.keys()
    assert "WorkerSaveImage" in saved["object_info"]

    second = Worker(settings)
    second_calls = counting_object_info(second)
    try:
        await second.start()
        result = await second.handle({"id": "snap-2", "input": {"workflow": txt2img(seed=2)}})
        assert "error" not in result, result
        assert base64.b64decode(result["images"][0]["data"]).startswith(PNG_MAGIC)
        assert second_calls == [], "the first job ran on the saved node list"

        # Listing the models asks ComfyUI (files come and go), and answers as before.
        models = await second.handle({"id": "snap-3", "input": {"list": "models"}})
        assert "tiny-random-sd15-noise.safetensors" in models["models"]["checkpoints"]
        assert second_calls
    finally:
        await second.close()
    assert comfyui.job_files() == set()
