"""The image's flavours (scripts/image/flavours.py): each Dockerfile is the default one with
its own base and lock, each lock pins the flavour's torch for its CUDA, and hub.json offers
the pools of the flavour the Hub builds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib

from scripts.image import flavours
from scripts.image.flavours import BLACKWELL, DEFAULT, FLAVOURS, HUB_FLAVOUR
from tests.support.workflows import REPO_ROOT


def locked(lock: str) -> dict[str, str]:
    text = (REPO_ROOT / lock).read_text()
    return {name.lower(): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\", text, re.M)}


def test_the_committed_flavour_files_are_what_the_table_makes():
    check = subprocess.run([sys.executable, "scripts/image/flavours.py", "check"], cwd=REPO_ROOT, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_a_dockerfile_edit_not_carried_to_the_other_flavours_is_named(tmp_path, monkeypatch):
    for name in ("Dockerfile", BLACKWELL.dockerfile, ".runpod/hub.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    monkeypatch.setattr(flavours, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(flavours, "HUB_JSON", tmp_path / ".runpod" / "hub.json")
    (tmp_path / "Dockerfile").write_text((tmp_path / "Dockerfile").read_text() + "ENV NEW_SETTING=1\n")

    assert flavours.main(["check"]) == 1
    flavours.main(["write"])
    assert (tmp_path / BLACKWELL.dockerfile).read_text().endswith("ENV NEW_SETTING=1\n")
    assert flavours.main(["check"]) == 0


def test_a_flavour_differs_from_the_default_only_in_its_base_and_its_lock():
    default = (REPO_ROOT / DEFAULT.dockerfile).read_text().splitlines()
    other = (REPO_ROOT / BLACKWELL.dockerfile).read_text().splitlines()
    body = [line for line in other if not line.startswith("# ") or line in default]
    changed = sorted(set(body) - set(default))
    assert changed == [f"ARG BASE_IMAGE={BLACKWELL.base_image}", f"ARG REQUIREMENTS_LOCK={BLACKWELL.lock}"]


def test_each_lock_pins_its_flavours_torch_stack_for_its_cuda():
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for flavour in FLAVOURS:
        pins = locked(flavour.lock)
        for pin in extras[flavour.torch_extra]:
            name, version = pin.split("==")
            assert pins[name] == version, (flavour.name, pin)
        assert pins["nvidia-cuda-runtime-cu12"].startswith(flavour.cuda + "."), flavour.name
    shared = set(locked(DEFAULT.lock)) & set(locked(BLACKWELL.lock))
    torch_stack = {"torch", "torchvision", "torchaudio", "xformers", "triton", "sympy"}
    differing = {name for name in shared if locked(DEFAULT.lock)[name] != locked(BLACKWELL.lock)[name]}
    assert {name for name in differing if not name.startswith("nvidia-")} <= torch_stack, differing


def test_hub_json_offers_the_hub_flavours_pools_and_only_blackwell_ready_flavours_list_blackwell():
    config = json.loads((REPO_ROOT / ".runpod" / "hub.json").read_text())["config"]
    assert config["gpuIds"].split(",") == list(HUB_FLAVOUR.pools)
    assert config["allowedCudaVersions"] == list(HUB_FLAVOUR.allowed_cuda_versions)
    for flavour in FLAVOURS:
        blackwell_pools = {pool for pool in flavour.pools if pool.startswith("BLACKWELL") or pool == "ADA_32_PRO"}
        blackwell_kernels = {"sm_100", "sm_120"} <= set(flavour.architectures)
        assert bool(blackwell_pools) == blackwell_kernels, flavour.name
        assert min(float(v) for v in flavour.allowed_cuda_versions) >= float(flavour.cuda), flavour.name


def test_the_lock_script_names_each_flavours_extra_and_lock():
    for flavour in FLAVOURS:
        answer = subprocess.run(
            [sys.executable, "scripts/image/flavours.py", "lock", flavour.name], cwd=REPO_ROOT, capture_output=True
        )
        assert answer.stdout.decode().split() == [flavour.torch_extra, flavour.lock]
    unknown = subprocess.run(
        [sys.executable, "scripts/image/flavours.py", "lock", "cuda9"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert unknown.returncode != 0
    assert "cuda12.4, cuda12.8" in unknown.stderr


def test_docs_deploy_shows_the_flavour_table_as_the_table_makes_it():
    assert flavours.table() in (REPO_ROOT / "docs" / "deploy.md").read_text()
