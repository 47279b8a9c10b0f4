"""ComfyUI/extra_model_paths.yaml: every model folder of the pinned ComfyUI, and a real
ComfyUI finds a model placed on the 'volume'; so do the worker's list job and its
missing-model errors."""

import asyncio
import json
import subprocess
import urllib.request

import yaml

from comfy_worker.core.settings import Settings
from comfy_worker.worker import Worker
from tests.support.comfyui_server import COMFYUI_DIR, PYTHON, start_comfyui
from tests.support.workflows import add_lora, txt2img

from .conftest import REPO_ROOT

VOLUME_YAML = REPO_ROOT / "ComfyUI" / "extra_model_paths.yaml"


def pinned_model_folders() -> dict[str, list[str]]:
    """folder name -> default subfolders under models/, read from the pinned folder_paths."""
    script = (
        "import json, os, folder_paths as f;"
        "print(json.dumps({k: [os.path.relpath(p, f.models_dir) for p in v[0]]"
        " for k, v in f.folder_names_and_paths.items() if k != 'custom_nodes'}))"
    )
    result = subprocess.run([str(PYTHON), "-c", script], cwd=COMFYUI_DIR, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def volume_folders() -> dict[str, list[str]]:
    section = yaml.safe_load(VOLUME_YAML.read_text())["runpod_volume"]
    assert section.pop("base_path") == "/runpod-volume/models/"
    return {
        name: [line.strip().rstrip("/") for line in value.splitlines() if line.strip()]
        for name, value in section.items()
    }


def test_every_model_folder_of_the_pinned_comfyui_is_covered():
    pinned, covered = pinned_model_folders(), volume_folders()
    assert set(pinned) <= set(covered), f"missing from the volume config: {set(pinned) - set(covered)}"
    for name, subfolders in pinned.items():
        assert set(subfolders) <= set(covered[name]), (name, subfolders, covered[name])


def test_comfyui_finds_models_on_the_volume(tmp_path):
    volume = tmp_path / "runpod-volume" / "models"
    (volume / "loras").mkdir(parents=True)
    (volume / "loras" / "on-the-volume.safetensors").write_bytes(b"\0")
    (volume / "unet").mkdir()
    (volume / "unet" / "legacy-folder.safetensors").write_bytes(b"\0")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(VOLUME_YAML.read_text().replace("/runpod-volume/models/", f"{volume}/"))

    server = start_comfyui(tmp_path / "base", ("--extra-model-paths-config", str(config)))
    try:

        def listed(folder: str) -> list[str]:
            with urllib.request.urlopen(f"http://{server.host}/models/{folder}") as resp:
                return json.load(resp)

        assert "on-the-volume.safetensors" in listed("loras")
        assert "legacy-folder.safetensors" in listed("diffusion_models")

        # The worker's list job and its missing-model errors see the volume too.
        settings = Settings.from_env({**server.env(), "WORKFLOWS_DIR": str(tmp_path / "no-workflows")})
        models, refused = asyncio.run(list_models_and_refuse_a_lora(settings))
        assert "on-the-volume.safetensors" in models["models"]["loras"]
        assert f"{volume}/loras" in models["folders"]["loras"]
        assert models["loader_inputs"]["LoraLoader.lora_name"]["folder"] == "loras"
        [error] = refused["details"]["node_errors"]
        assert error["missing"]["closest"] == ["on-the-volume.safetensors"]
        assert f"{volume}/loras" in error["missing"]["searched"]
    finally:
        server.stop()


async def list_models_and_refuse_a_lora(settings: Settings) -> tuple[dict, dict]:
    worker = Worker(settings)
    try:
        models = await worker.handle({"id": "list", "input": {"list": "models"}})
        workflow = add_lora(txt2img(), "on_the_volume.safetensors")
        refused = await worker.handle({"id": "refused", "input": {"workflow": workflow}})
        return models, refused
    finally:
        await worker.close()
