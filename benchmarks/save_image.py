"""What saving PNGs costs ComfyUI's prompt thread: SaveImage against WorkerSaveImage.

A prompt EmptyImage -> saver (batches of 1 and 4 images, 512 and 1024 px) is run on the
real ComfyUI, each saver `runs` times; the prompt's run time is ComfyUI's own (its
history's execution_start to execution_success timestamps). SaveImage compresses the
PNGs inside the prompt, so the next prompt waits for them; WorkerSaveImage
(comfyui_nodes/worker_save_image) copies the pixels and hands the encoding to a thread.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
import uuid
from dataclasses import dataclass

from tests.support.comfyui_server import ComfyServer
from tests.support.workflows import empty_image

CASES = [(512, 1), (512, 4), (1024, 1), (1024, 4)]


@dataclass
class SaveCost:
    size: int
    batch: int
    save_image_ms: float  # median prompt run time with SaveImage
    worker_save_image_ms: float


def run_prompt(server: ComfyServer, prompt: dict) -> float:
    """ComfyUI's run time of the prompt, ms, by its own clock."""
    body = json.dumps({"prompt": prompt, "client_id": uuid.uuid4().hex}).encode()
    request = urllib.request.Request(f"http://{server.host}/prompt", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as resp:
        prompt_id = json.load(resp)["prompt_id"]
    while True:
        with urllib.request.urlopen(f"http://{server.host}/history/{prompt_id}") as resp:
            entry = json.load(resp).get(prompt_id)
        if entry and entry.get("status", {}).get("completed"):
            break
        time.sleep(0.01)
    stamps = {name: data["timestamp"] for name, data in entry["status"]["messages"]}
    for image in (i for node in entry["outputs"].values() for i in node.get("images", [])):
        path = server.base_dir / "output" / image["filename"]
        while path.with_name(path.name + ".writing").exists():
            time.sleep(0.005)
        path.unlink(missing_ok=True)
    urllib.request.urlopen(
        urllib.request.Request(
            f"http://{server.host}/history",
            json.dumps({"delete": [prompt_id]}).encode(),
            {"Content-Type": "application/json"},
        )
    ).close()
    return float(stamps["execution_success"] - stamps["execution_start"])


def measure(server: ComfyServer, runs: int) -> list[SaveCost]:
    results = []
    for size, batch in CASES:
        times: dict[str, list[float]] = {"SaveImage": [], "WorkerSaveImage": []}
        for i in range(runs + 1):
            for saver in times:
                workflow = empty_image(color=(i * 7919 + size + batch) % 0xFFFFFF, size=size, prefix="bench-save")
                workflow["1"]["inputs"]["batch_size"] = batch
                workflow["2"]["class_type"] = saver
                ran_ms = run_prompt(server, workflow)
                if i > 0:  # the first of each: warm-up
                    times[saver].append(ran_ms)
        results.append(
            SaveCost(size, batch, statistics.median(times["SaveImage"]), statistics.median(times["WorkerSaveImage"]))
        )
    return results
