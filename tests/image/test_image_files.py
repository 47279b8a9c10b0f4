"""The files the image is built from: the Dockerfile's sources exist, the RunPod Hub
files have RunPod's structure, and the Hub test is a job this worker accepts."""

import json
import re
import subprocess
import sys

import pytest
from manifests import load_models

from comfy_worker.core.settings import Settings
from comfy_worker.request.job_input import parse_job_input

from .conftest import REPO_ROOT


def dockerfile_sources() -> list[str]:
    """What the Dockerfile COPYs from the context, build arguments at their defaults."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S*)", text, flags=re.M))
    sources = []
    for line in text.splitlines():
        line = re.sub(r"\$\{(\w+)\}", lambda match: defaults[match.group(1)], line)
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_every_file_the_dockerfile_copies_exists():
    sources = dockerfile_sources()
    assert "start.sh" in sources
    assert "rp_handler.py" in sources
    missing = [s for s in sources if not (REPO_ROOT / s).exists()]
    assert not missing


def test_the_image_copies_every_module_the_worker_needs():
    sources = set(dockerfile_sources())
    assert {"comfy_worker", "rp_handler.py", "requirements.lock", "ComfyUI/extra_model_paths.yaml"} <= sources
    assert not {"local_endpoint", "comfy_worker_client", "pyproject.toml"} & sources, "the image holds the worker only"
    assert "ComfyUI/launch.args" in sources, "start.sh reads ComfyUI's launch flags from it"


def hub() -> dict:
    return json.loads((REPO_ROOT / ".runpod" / "hub.json").read_text())


def hub_tests() -> dict:
    return json.loads((REPO_ROOT / ".runpod" / "tests.json").read_text())


def test_hub_json_structure():
    document = hub()
    assert {"title", "description", "type", "category", "config"} <= document.keys()
    assert document["type"] == "serverless"
    config = document["config"]
    assert config["runsOn"] == "GPU"
    assert isinstance(config["containerDiskInGb"], int)
    assert all(re.fullmatch(r"\d+\.\d+", v) for v in config["allowedCudaVersions"])
    for env in config["env"]:
        assert isinstance(env["key"], str)
        assert env["key"].isupper()
        assert ("value" in env) != ("input" in env), env
        if "input" in env:
            assert {"name", "type", "description"} <= env["input"].keys()
            assert env["input"]["type"] in {"string", "number", "boolean", "huggingface"}


def test_hub_env_keys_are_real_settings():
    start_sh = (REPO_ROOT / "start.sh").read_text()
    for env in hub()["config"]["env"]:
        key = env["key"]
        read = key in Settings.variables() or f"${{{key}" in start_sh
        assert read, f"{key} is read neither by the worker nor by start.sh"


def test_hub_tests_structure_and_inputs_are_valid_jobs():
    document = hub_tests()
    assert document["tests"], "the Hub needs at least one test"
    for test in document["tests"]:
        assert {"name", "input", "timeout"} <= test.keys()
        assert test["timeout"] > 0
        parse_job_input(test["input"])
    assert {"gpuTypeId", "gpuCount"} <= document["config"].keys()


@pytest.mark.parametrize("job", ["hub", "test_input"])
def test_default_jobs_use_the_model_the_image_bakes(job):
    if job == "hub":
        workflow = hub_tests()["tests"][0]["input"]["workflow"]
    else:
        workflow = json.loads((REPO_ROOT / "test_input.json").read_text())["input"]["workflow"]
    baked = {
        model.name for model in load_models(REPO_ROOT / "ComfyUI" / "models.json") if model.folder == "checkpoints"
    }
    names = {
        node["inputs"]["ckpt_name"] for node in workflow.values() if node["class_type"] == "CheckpointLoaderSimple"
    }
    assert names
    assert names <= baked


def pins(path) -> dict[str, str]:
    return pins_in(path.read_text())


def pins_in(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\;]+)", line)
        if match:
            found[re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")] = match.group(2)
    return found


def test_the_image_lock_holds_every_pin_of_its_inputs():
    lock = pins(REPO_ROOT / "requirements.lock")
    cuda = subprocess.run(
        [sys.executable, "scripts/pins.py", "cuda"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    inputs = {"requirements.txt": (REPO_ROOT / "requirements.txt").read_text(), "pyproject.toml [cuda]": cuda}
    for source, text in inputs.items():
        for name, version in pins_in(text).items():
            assert lock.get(name) == version, f"{source} pins {name}=={version}; regenerate requirements.lock"
    assert all("--hash=sha256:" in block for block in (REPO_ROOT / "requirements.lock").read_text().split("==")[1:])
