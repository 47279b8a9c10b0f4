"""comfy_worker/models/provenance.py: what made a result, read once; model hashes kept; the
differences a replay is refused for, each named."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from comfy_worker.comfyui.comfy_api import ComfyOffers
from comfy_worker.core.errors import ReplayRefused
from comfy_worker.core.settings import Settings
from comfy_worker.models.provenance import FileHashes, ProvenanceKeeper, check_replay, differences, model_files
from comfy_worker.node_packs.volume_packs import PackOnVolume, VolumePacks
from comfy_worker.request.job_input import RecordedRun
from comfy_worker.request.workflow import Workflow

GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "styles/ink.SAFETENSORS", "model": ["4", 0]}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "sampler_name": "euler", "model": ["10", 0]}},
}


class FakeComfyUI:
    """What the keeper asks of ComfyUI: its version and its model folders (once)."""

    def __init__(self, folders: dict[str, list[str]]):
        self.folders = folders
        self.asked = 0

    async def model_folders(self) -> dict[str, list[str]]:
        self.asked += 1
        return self.folders

    async def offers(self) -> ComfyOffers:
        return ComfyOffers("0.9.1")


class Capabilities:
    def __init__(self, comfy: FakeComfyUI, volume_packs: VolumePacks | None = None):
        self.comfy = comfy
        self.volume_packs = volume_packs or VolumePacks()


@pytest.fixture
def installation(tmp_path):
    """A ComfyUI tree with two node packs (one pinned by the manifest) and models,
    and the worker's folder with its lock and manifest."""
    comfyui, worker = tmp_path / "comfyui", tmp_path / "worker"
    (comfyui / "custom_nodes" / "pinned_pack").mkdir(parents=True)
    (comfyui / "custom_nodes" / "local_pack").mkdir()
    (comfyui / "custom_nodes" / "local_pack" / "nodes.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (comfyui / "custom_nodes" / "__pycache__").mkdir()
    (worker / "ComfyUI").mkdir(parents=True)
    (worker / "ComfyUI" / "comfyui.lock").write_text("# pinned\nCOMFYUI_VERSION=v0.9.1\nCOMFYUI_COMMIT=abc123\n")
    manifest = {"custom_nodes": [{"name": "pinned_pack", "repo": "https://example.com/p.git", "commit": "c" * 40}]}
    (worker / "ComfyUI" / "custom_nodes.json").write_text(json.dumps(manifest))
    checkpoints, loras = tmp_path / "models" / "checkpoints", tmp_path / "models" / "loras" / "styles"
    checkpoints.mkdir(parents=True)
    loras.mkdir(parents=True)
    (checkpoints / "sd15.safetensors").write_bytes(b"checkpoint bytes")
    (checkpoints / ".sd15.safetensors.sha256").write_text("b" * 64 + "\n")  # the build's marker
    (loras / "ink.SAFETENSORS").write_bytes(b"lora bytes")
    folders = {"checkpoints": [str(checkpoints)], "loras": [str(loras.parent)]}
    return ProvenanceKeeper(Settings(comfyui_path=comfyui), worker), FakeComfyUI(folders)


async def test_a_runs_provenance_names_comfyui_the_node_packs_the_model_hashes_and_the_graph(installation):
    keeper, comfy = installation
    graph = Workflow(GRAPH)

    volume = VolumePacks({"volume_pack": PackOnVolume("a" * 40), "refused_pack": PackOnVolume("files:r", "conflict")})
    provenance = await keeper.of(graph, graph, Capabilities(comfy, volume))  # type: ignore[arg-type]
    again = await keeper.of(graph, graph, Capabilities(comfy, volume))  # type: ignore[arg-type]

    assert provenance["comfyui"] == {"version": "0.9.1", "commit": "abc123"}
    assert provenance["node_packs"]["pinned_pack"] == "c" * 40
    assert provenance["node_packs"]["local_pack"].startswith("files:")
    assert provenance["node_packs"]["volume_pack"] == "a" * 40  # a refused one never ran: not named
    assert set(provenance["node_packs"]) == {"pinned_pack", "local_pack", "volume_pack"}
    assert provenance["models"] == {
        "checkpoints/sd15.safetensors": "b" * 64,  # the build's marker: the file is not read
        "loras/styles/ink.SAFETENSORS": hashlib.sha256(b"lora bytes").hexdigest(),
    }
    assert provenance["seeds"] == {"3.seed": 42}
    assert provenance["workflow"] == GRAPH
    assert again == provenance
    assert comfy.asked == 1, "ComfyUI's folders are asked once"


async def test_a_model_no_folder_holds_is_named_without_a_hash(installation):
    keeper, comfy = installation
    graph = Workflow({"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "gone.safetensors"}}})

    provenance = await keeper.of(graph, graph, Capabilities(comfy))  # type: ignore[arg-type]

    assert provenance["models"] == {"?/gone.safetensors": None}


def test_a_file_is_hashed_once_until_it_changes(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"one")
    hashes = FileHashes()
    assert hashes.sha256(model) == hashlib.sha256(b"one").hexdigest()
    model.write_bytes(b"two")
    os.utime(model, ns=(1, 1))  # another modification time: read again
    assert hashes.sha256(model) == hashlib.sha256(b"two").hexdigest()
    assert len(hashes._known) == 2


def test_model_files_are_the_inputs_with_a_model_files_extension():
    assert model_files(Workflow(GRAPH)) == ["sd15.safetensors", "styles/ink.SAFETENSORS"]


def recorded(**changes) -> RecordedRun:
    fields = {
        "comfyui": {"version": "0.9.1", "commit": "abc123"},
        "node_packs": {"pinned_pack": "c" * 40},
        "models": {"checkpoints/sd15.safetensors": "b" * 64},
        "workflow": GRAPH,
        **changes,
    }
    return RecordedRun.model_validate(fields)


HERE = {
    "comfyui": {"version": "0.9.1", "commit": "abc123"},
    "node_packs": {"pinned_pack": "c" * 40, "extra_pack": "files:x"},
    "models": {"checkpoints/sd15.safetensors": "b" * 64},
}


def test_a_replay_on_a_matching_worker_is_let_through_and_extra_packs_do_not_matter():
    check_replay(recorded(), HERE)


def test_each_difference_is_named():
    found = differences(
        recorded(
            comfyui={"version": "0.3.75", "commit": "abc123"},
            node_packs={"pinned_pack": "d" * 40, "gone_pack": "e" * 40},
            models={"checkpoints/sd15.safetensors": "f" * 64, "loras/x.safetensors": "0" * 64},
        ),
        HERE,
    )

    assert found == [
        "ComfyUI version 0.3.75 ran it; this worker has 0.9.1",
        f"node pack 'pinned_pack' was at {'d' * 40}; this worker's is at {'c' * 40}",
        "node pack 'gone_pack' ran it; this worker does not have it",
        f"model file checkpoints/sd15.safetensors had sha256 {'f' * 64}; this worker's has {'b' * 64}",
        "model file loras/x.safetensors ran it; this worker does not have it",
    ]
    with pytest.raises(ReplayRefused) as refused:
        check_replay(recorded(comfyui={"version": "0.3.75", "commit": "abc123"}), HERE)
    assert refused.value.details == {"differences": ["ComfyUI version 0.3.75 ran it; this worker has 0.9.1"]}
