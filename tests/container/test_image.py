"""The built image, run as RunPod runs it: a local test job, the production worker loop
against a local endpoint (job, progress, cancel, the Hub test), and what must be true
inside (the flavour's CUDA and GPU architectures, xformers, the custom node and its
requirement, tcmalloc). Tests marked every_flavour also run against the other flavours."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import urllib.request

import pytest

from comfy_worker_client import EndpointClient
from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME as TINY_CHECKPOINT
from scripts.dev.make_tiny_checkpoint import LORA_NAME
from tests.support.comfyui_server import COMFYUI_DIR, free_port
from tests.support.servers import model_server, wait_until
from tests.support.templates import on_tiny_models, template
from tests.support.volume_packs import WHEELS, stand_in_volume
from tests.support.workflows import add_lora

from .conftest import FLAVOUR, IMAGE, REPO_ROOT, docker, tiny_job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def start_sh_test_input(job: dict, *docker_args: str) -> subprocess.CompletedProcess:
    """`start.sh --test_input` in a fresh container of the image, as a developer runs it."""
    return docker(
        "run", "--rm", "--network", "host", *docker_args,
        "-e", "COMFY_EXTRA_ARGS=--cpu", "-e", f"COMFY_HOST=127.0.0.1:{free_port()}",
        IMAGE, "/worker/start.sh", "--test_input", json.dumps(job),
        timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.every_flavour
def test_test_input_returns_a_png():
    # The SDK logs the result, cutting a line over 4096 characters in its middle (a result
    # with its provenance is such a line): the start of the image's base64 is read.
    result = start_sh_test_input(tiny_job(seed=3, size=16))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    images = re.findall(r"""["']data["']: ["']([A-Za-z0-9+/]{96})""", output)  # the SDK logs the result
    assert images, output[-2000:]
    assert base64.b64decode(images[0]).startswith(PNG_MAGIC), output[-2000:]
    # A fresh container's first job logs no traceback (the in-memory database printed three).
    assert "Traceback" not in output, output[output.index("Traceback") - 200 :][:3000]


def test_node_packs_on_a_network_volume_load_without_a_rebuild(tmp_path):
    """A stand-in volume mounted as RunPod mounts one: start.sh fetches the pack its
    custom_nodes.json pins, installs that pack's requirement into a layer on the volume, loads
    the packs beside the image's, and names the broken and the conflicting one."""
    volume, commit = stand_in_volume(tmp_path)
    sources = tmp_path / "sources"  # the pinned pack's repository, at the same path inside
    job = {"input": {"workflow": {"1": {"class_type": "VolumeTitleize", "inputs": {"text": "packs from the volume"}}}}}
    result = start_sh_test_input(
        job,
        "-v", f"{volume}:/runpod-volume", "-v", f"{WHEELS}:/wheels:ro", "-v", f"{sources}:{sources}:ro",
        "-e", "PIP_NO_INDEX=1", "-e", "PIP_FIND_LINKS=/wheels",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Packs From The Volume" in output, output[-3000:]
    assert "comfyui-tooling-nodes (5 node type(s)), titleize-pack (1 node type(s)) loaded" in output
    assert (
        "node pack 'broken-pack' from the network volume failed: No module named 'module_that_does_not_exist'" in output
    )
    assert re.search(r"'aiohttp<3' conflicts with the image's aiohttp==\d", output), output[-3000:]
    [layer] = [path for path in (volume / "comfy-worker" / "node-envs").iterdir() if not path.name.startswith(".")]
    assert (layer / "site-packages" / "inflection.py").is_file()
    assert (
        volume / "ComfyUI" / "custom_nodes" / "titleize-pack" / ".comfy-worker-commit"
    ).read_text().strip() == commit


@pytest.mark.every_flavour
def test_a_job_through_the_local_endpoint_completes_with_progress(running_worker):
    client = EndpointClient(running_worker.endpoint_url)
    seen = []
    job_id = client.run(tiny_job(steps=8, seed=4)["input"])
    final = client.wait(job_id, on_status=seen.append, poll_interval_s=0.1)
    assert final["status"] == "COMPLETED", final
    [image] = final["output"]["images"]
    assert base64.b64decode(image["data"]).startswith(PNG_MAGIC)
    assert any(s["status"] == "IN_PROGRESS" and (s.get("output") or {}).get("message") for s in seen), seen


def test_ui_format_and_named_workflows_run_in_the_image(running_worker):
    # The converter works with only what the lock installs (comfy-cli without its CLI's dependencies).
    client = EndpointClient(running_worker.endpoint_url)
    ui_job = client.wait(client.run({"workflow": on_tiny_models(template("default"))}), poll_interval_s=0.1)
    assert ui_job["status"] == "COMPLETED", ui_job
    assert ui_job["output"]["workflow_format"] == "ui"

    params = {"checkpoint": TINY_CHECKPOINT, "steps": 2, "width": 64, "height": 64, "seed": 5}
    named = client.wait(client.run({"workflow_name": "txt2img", "params": params}), poll_interval_s=0.1)
    assert named["status"] == "COMPLETED", named
    assert named["output"]["seeds"] == {"3.seed": 5}
    assert base64.b64decode(named["output"]["images"][0]["data"]).startswith(PNG_MAGIC)


def test_a_lora_by_url_is_fetched_into_the_model_cache(running_worker):
    # start.sh's second model paths file makes the cache's folders ComfyUI's.
    lora = (COMFYUI_DIR / "models" / "loras" / LORA_NAME).read_bytes()
    job = tiny_job(seed=6)["input"]
    with model_server({"/style.safetensors": lora}) as server:
        add_lora(job["workflow"], f"{server.url}/style.safetensors")
        client = EndpointClient(running_worker.endpoint_url)
        final = client.wait(client.run(job), poll_interval_s=0.1)
    assert final["status"] == "COMPLETED", final
    assert server.count("/style.safetensors") == 1
    listed = running_worker.exec("ls", "/tmp/comfy-model-cache/loras").stdout
    assert "-style.safetensors" in listed


def test_a_cancel_stops_comfyuis_work(running_worker):
    client = EndpointClient(running_worker.endpoint_url)
    job_id = client.run(tiny_job(steps=500, seed=5)["input"])
    wait_until(lambda: ((client.status(job_id).get("output") or {}).get("step") or 0) > 0, 300, "sampling")
    cancelled_at = time.monotonic()
    client.cancel(job_id)

    def comfyui_idle() -> bool:
        with urllib.request.urlopen(f"{running_worker.comfy_url}/queue", timeout=5) as response:
            queue = json.load(response)
        return not queue["queue_running"] and not queue["queue_pending"]

    wait_until(comfyui_idle, 30, "ComfyUI to drop the cancelled prompt")
    assert time.monotonic() - cancelled_at < 30
    assert client.status(job_id)["status"] == "CANCELLED"


def dockerfile_step(script: str) -> str:
    """The Dockerfile's RUN instruction that runs `script`, verbatim (with its continuation lines)."""
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("RUN ") and script in line)
    end = start
    while lines[end].endswith("\\"):
        end += 1
    return "\n".join(lines[start : end + 1])


def test_a_comfyui_upgrade_the_worker_cannot_drive_fails_the_build_naming_what_broke(tmp_path):
    # The image's ComfyUI made to never send `executed`, then the build's own proof step, as written.
    (tmp_path / "Dockerfile").write_text(
        f"FROM {IMAGE}\n"
        """RUN sed -i 's/send_sync("executed",/send_sync("executed_renamed",/' /comfyui/execution.py\n"""
        f"{dockerfile_step('check_comfyui.py')}\n"
    )
    # --force-rm: the failing step's container goes too, so its layer is not held and the
    # run's prune (by the label this image inherits) removes it: ~8 GB a run otherwise.
    build = docker(
        "build", "--network", "host", "--no-cache", "--force-rm", "-t", f"{IMAGE}-broken", str(tmp_path), check=False
    )
    output = build.stdout + build.stderr
    docker("image", "rm", "-f", f"{IMAGE}-broken", check=False)
    assert build.returncode != 0, output[-3000:]
    assert "the worker cannot drive this ComfyUI" in output, output[-3000:]
    assert "ComfyUI's websocket sent no `executed` event" in output, output[-3000:]


def test_the_hub_test_passes_on_the_image(running_worker):
    hub_test = json.loads((REPO_ROOT / ".runpod" / "tests.json").read_text())["tests"][0]
    job_input = hub_test["input"]
    for node in job_input["workflow"].values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = "tiny-random-sd15-noise.safetensors"  # the model the image test bakes
    client = EndpointClient(running_worker.endpoint_url)
    final = client.wait(client.run(job_input), poll_interval_s=0.5)
    assert final["status"] == "COMPLETED", final
    assert final["output"]["images"]


@pytest.mark.every_flavour
def test_inside_the_image(running_worker):
    # The architectures torch was compiled for, read without a GPU.
    checks = (
        "import json, torch, xformers, xformers.ops, humanize; "
        "print(json.dumps([torch.__version__, torch.version.cuda, torch._C._cuda_getArchFlags().split()]))"
    )
    python = running_worker.exec("python", "-c", checks)
    assert python.returncode == 0, python.stderr[-2000:]
    torch_version, cuda, architectures = json.loads(python.stdout.strip().splitlines()[-1])
    assert cuda == FLAVOUR.cuda, f"{FLAVOUR.name}: torch {torch_version} is built for CUDA {cuda}"
    missing = set(FLAVOUR.architectures) - set(architectures)
    assert not missing, f"{FLAVOUR.name}: torch {torch_version} lacks kernels for {sorted(missing)}: {architectures}"

    with urllib.request.urlopen(f"{running_worker.comfy_url}/object_info/ImageTestNode", timeout=10) as response:
        assert "ImageTestNode" in json.load(response), "the custom node is registered with ComfyUI"
    with urllib.request.urlopen(f"{running_worker.comfy_url}/object_info/WorkerSaveImage", timeout=10) as response:
        assert "WorkerSaveImage" in json.load(response), "the worker's own saver is installed"

    maps = running_worker.exec("sh", "-c", "cat /proc/$(cat /tmp/comfyui.pid)/maps")
    assert "libtcmalloc" in maps.stdout, "tcmalloc is preloaded into ComfyUI"
    snapshot = running_worker.exec(
        "python", "-c", "import json; print(sorted(json.load(open('/comfyui/worker-object-info.json'))['object_info']))"
    )
    assert "ImageTestNode" in snapshot.stdout, "the build saved the node list for the worker: " + snapshot.stderr[-500:]
    assert "node list from the snapshot" in running_worker.logs(), "the worker was ready without GET /object_info"
    no_git = running_worker.exec("sh", "-c", "ls -a /comfyui/custom_nodes/image_test_node")
    assert ".git" not in no_git.stdout.split()
    # The build listed the files ComfyUI's boot opens (its libraries, then its modules), and
    # start.sh read them ahead or found them cached.
    listing = "/comfyui/boot-files.txt"
    listed = running_worker.exec("sh", "-c", f"grep -c . {listing}; grep -m1 '/comfy/__pycache__/sd[.]' {listing}")
    count, sd_module = listed.stdout.split()
    assert int(count) > 1000, listed.stdout
    assert sd_module.startswith("/comfyui/comfy/__pycache__/sd."), "compiled before it was recorded: " + listed.stdout
    assert "[boot_readahead]" in running_worker.logs(), "start.sh ran the read-ahead"
