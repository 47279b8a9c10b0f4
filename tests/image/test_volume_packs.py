"""Custom node packs from a network volume, end to end: start.sh on a folder standing in for the
volume (tests/support/volume_packs.py), the real ComfyUI (CPU) and the local endpoint; and the
requirements layer against real pip, for a conflict only a dependency shows."""

from __future__ import annotations

import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from comfy_worker.node_packs.requirements_layer import RequirementsLayer
from comfy_worker_client import EndpointClient
from tests.support.comfyui_server import PYTHON
from tests.support.local_endpoint import API_KEY, running_endpoint
from tests.support.volume_packs import stand_in_volume, start_sh_env, tooling_job
from tests.support.workflows import decode_image


def test_volume_packs_load_beside_the_image_and_the_bad_ones_are_named(tmp_path):
    volume, commit = stand_in_volume(tmp_path)
    log_file = tmp_path / "first.log"
    env = start_sh_env(tmp_path, volume, "first", tmp_path / "node-snapshot.json")

    with running_endpoint(env, log_file, worker_command="bash start.sh", ready_s=600) as base_url:
        with EndpointClient(base_url, API_KEY) as client:
            listed = client.wait(client.run({"list": "nodes"}), poll_interval_s=0.1)["output"]
            done = client.wait(client.run(tooling_job((10, 200, 30))), poll_interval_s=0.1)
    first_log = log_file.read_text()

    packs = listed["volume_packs"]
    assert packs["comfyui-tooling-nodes"]["state"] == "loaded"
    assert packs["comfyui-tooling-nodes"]["nodes"] == 5
    assert packs["comfyui-tooling-nodes"]["pin"].startswith("files:")
    assert packs["titleize-pack"] == {"state": "loaded", "pin": commit, "nodes": 1}
    assert packs["broken-pack"]["state"] == "failed"
    assert "No module named 'module_that_does_not_exist'" in packs["broken-pack"]["error"]
    conflicting = packs["conflicting-pack"]
    assert conflicting["state"] == "refused"
    assert f"'aiohttp<3' conflicts with the image's aiohttp=={metadata.version('aiohttp')}" in conflicting["error"]
    assert "ConflictingNothing" not in listed["nodes"]
    assert listed["node_packs"]["comfyui-tooling-nodes"][0] == "ETN_ApplyMaskToImage"
    # The job ran the real pack's loader and the pinned pack's node, with its package from the layer.
    assert done["status"] == "COMPLETED", done
    assert decode_image(done["output"]["images"][0]).getpixel((0, 0)) == (10, 200, 30)
    assert done["output"]["text"] == [{"node_id": "3", "text": "Packs From The Volume"}]
    assert done["output"]["provenance"]["node_packs"]["titleize-pack"] == commit
    # Named in the log too, and the image's environment is untouched.
    assert "node pack 'broken-pack' from the network volume failed" in first_log
    assert "node pack 'conflicting-pack' from the network volume refused" in first_log
    assert "requirements layer" in first_log
    assert "inflection==0.5.1" in first_log
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("inflection")
    layers = list((volume / "comfy-worker" / "node-envs").iterdir())
    assert [layer.name for layer in layers if not layer.name.startswith(".")] == [layers[0].name]
    assert (layers[0] / "site-packages" / "inflection.py").is_file()
    pinned = volume / "ComfyUI" / "custom_nodes" / "titleize-pack"
    assert (pinned / ".comfy-worker-commit").read_text().strip() == commit
    assert not (pinned / ".git").exists()

    # The next start finds the pinned pack and the layer built: no fetch and no pip run.
    log_file = tmp_path / "second.log"
    with running_endpoint(
        start_sh_env(tmp_path, volume, "second", tmp_path / "node-snapshot.json"), log_file, "bash start.sh", 600
    ) as base_url:
        with EndpointClient(base_url, API_KEY) as client:
            again = client.wait(client.run(tooling_job((1, 2, 3))), poll_interval_s=0.1)
    second_log = log_file.read_text()
    assert again["status"] == "COMPLETED", again
    assert again["output"]["text"] == [{"node_id": "3", "text": "Packs From The Volume"}]
    assert "built before (1 package(s)); no pip run" in second_log
    assert "fetching titleize-pack" not in second_log
    assert "fetching titleize-pack" in first_log
    # start.sh removed what it made for ComfyUI (the links, the report) when it stopped.
    assert not list((tmp_path / "tmp-first").glob("volume-node-packs.*"))
    assert not list((tmp_path / "tmp-second").glob("volume-node-packs.*"))


def make_wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    """A pure-Python wheel with one empty module that depends on `requires`."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": "",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
        ),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / f"{module}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in {**files, f"{info}/RECORD": record}.items():
            wheel.writestr(path, text)


def test_real_pip_finds_a_pack_whose_dependency_would_replace_an_image_pin_and_names_it(tmp_path, monkeypatch):
    """The conflict that no requirements.txt line shows: a dependency's own requirement."""
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, "needs-old-aiohttp", "1.0", ["aiohttp<3"])
    make_wheel(index, "harmless-helper", "2.0", [])
    for name, value in {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}.items():
        monkeypatch.setenv(name, value)
    packs = tmp_path / "packs"
    wanted = {}
    for pack, requirement in {"fine": "-r base-requirements.txt", "sneaky": "needs-old-aiohttp"}.items():
        (packs / pack).mkdir(parents=True)
        (packs / pack / "requirements.txt").write_text(requirement + "\n")
        wanted[pack] = packs / pack / "requirements.txt"
    (packs / "fine" / "base-requirements.txt").write_text("harmless-helper==2.0\n")  # found beside its parent

    outcome = RequirementsLayer(tmp_path / "envs", str(PYTHON)).prepare(wanted)

    assert list(outcome.refused) == ["sneaky"]
    assert "aiohttp<3" in outcome.refused["sneaky"]
    assert f"(constraint) aiohttp=={metadata.version('aiohttp')}" in outcome.refused["sneaky"]
    assert outcome.installed == ["harmless-helper==2.0"]
    assert outcome.site is not None
    assert (outcome.site / "harmless_helper" / "__init__.py").is_file()
