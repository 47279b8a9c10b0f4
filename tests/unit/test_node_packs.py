"""Node packs from the network volume, without ComfyUI: the boot step's choices, the requirements
layer (pip scripted), each pack's pin, and what `{"list": "nodes"}` says became of them."""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from comfy_worker.comfyui import nodes_snapshot
from comfy_worker.comfyui.capabilities import ComfyCapabilities
from comfy_worker.comfyui.comfy_client import import_errors
from comfy_worker.core.settings import Settings
from comfy_worker.node_packs import requirements_layer, volume_boot
from comfy_worker.node_packs.requirements_layer import LayerOutcome, RequirementsLayer
from comfy_worker.node_packs.volume_packs import PIN_MARKER, PackOnVolume, VolumePacks, git_head, pin_of
from tests.support.fake_comfy import OBJECT_INFO, FakeComfy

IMAGE = {"torch": "2.5.1+cu124", "numpy": "2.1.3", "aiohttp": "3.11.0"}
COMMIT = "a" * 40


class ScriptedPip:
    """pip as `RequirementsLayer` runs it: a dry run reports each requirement line's package
    the image lacks (at version 1.0), unless a line is in `conflicts` or `unreachable`; an
    install makes a folder per package."""

    def __init__(self, conflicts: frozenset[str] = frozenset(), unreachable: frozenset[str] = frozenset()):
        self.conflicts, self.unreachable = conflicts, unreachable
        self.calls: list[list[str]] = []
        self.seen: list[str] = []  # every requirement line it was given

    def __call__(self, command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        lines = [
            line.strip()
            for index, arg in enumerate(command)
            if arg == "-r"
            for line in requirements_layer.requirements_text(Path(command[index + 1])).splitlines()
            if line.strip() and not line.startswith("-")  # an included file's lines are in the text
        ]
        self.seen += lines
        for line in lines:
            if line in self.conflicts:
                stderr = f"ERROR: Cannot install {line}\n\nThe conflict is caused by:\n    The user requested {line}\n"
                stderr += "    The user requested (constraint) aiohttp==3.11.0\n\nTo fix this..."
                return subprocess.CompletedProcess(command, 1, "", stderr)
            if line in self.unreachable:
                return subprocess.CompletedProcess(command, 1, "", f"ERROR: No matching distribution found for {line}")
        if "--dry-run" in command:
            report = Path(command[command.index("--report") + 1])
            names = sorted({re.split(r"[<>=!~ ;]", line)[0] for line in lines} - set(IMAGE))  # installed: kept
            report.write_text(json.dumps({"install": [{"metadata": {"name": n, "version": "1.0"}} for n in names]}))
        else:
            target = Path(command[command.index("--target") + 1])
            for spec in command[command.index("--target") + 2 :]:
                (target / spec.split("==")[0]).mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0, "", "")

    @property
    def dry_runs(self) -> int:
        return sum("--dry-run" in call for call in self.calls)


def requirements(tmp_path: Path, **packs: str) -> dict[str, Path]:
    found = {}
    for name, text in packs.items():
        path = tmp_path / "packs" / name / "requirements.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        found[name] = path
    return found


def layer(tmp_path: Path, pip: ScriptedPip, now: float = 1e9) -> RequirementsLayer:
    return RequirementsLayer(tmp_path / "envs", "python", IMAGE, run=pip, now=lambda: now)


def test_packages_the_image_lacks_go_into_a_layer_that_the_next_start_finds_built(tmp_path):
    pip = ScriptedPip()
    wanted = requirements(tmp_path, a="colorama==1.0\n", b="inflection\nnumpy>=2\n")

    first = layer(tmp_path, pip).prepare(wanted)

    assert first.refused == {}
    assert first.installed == ["colorama==1.0", "inflection==1.0"]  # the scripted pip's report
    assert first.site is not None
    assert (first.site / "colorama").is_dir()
    assert pip.dry_runs == 1
    assert not [path for path in (tmp_path / "envs").iterdir() if ".partial-" in path.name]
    constraints = Path(pip.calls[0][pip.calls[0].index("-c") + 1])
    assert not constraints.exists()  # the scratch folder is gone
    again = layer(tmp_path, ScriptedPip()).prepare(wanted)
    assert again == LayerOutcome(first.site, {}, first.installed, cached=True)


def test_a_requirement_against_an_image_pin_is_refused_naming_both_and_pip_never_sees_it(tmp_path):
    pip = ScriptedPip()
    wanted = requirements(tmp_path, old="numpy<2\n", fine="colorama\n", torchy="torch==2.1.0 ; python_version > '3'\n")

    outcome = layer(tmp_path, pip).prepare(wanted)

    assert set(outcome.refused) == {"old", "torchy"}
    assert "'numpy<2' conflicts with the image's numpy==2.1.3" in outcome.refused["old"]
    assert (
        "'torch==2.1.0 ; python_version > '3'' conflicts with the image's torch==2.5.1+cu124"
        in outcome.refused["torchy"]
    )
    assert outcome.installed == ["colorama==1.0"]
    assert pip.seen == ["colorama"]


def test_a_pack_whose_requirements_pip_cannot_fit_is_found_and_named_and_the_others_load(tmp_path):
    pip = ScriptedPip(conflicts=frozenset({"needs-old-aiohttp"}))
    wanted = requirements(tmp_path, a="colorama\n", b="needs-old-aiohttp\n", c="inflection\n")

    outcome = layer(tmp_path, pip).prepare(wanted)

    assert list(outcome.refused) == ["b"]
    assert "The user requested (constraint) aiohttp==3.11.0" in outcome.refused["b"]
    assert outcome.installed == ["colorama==1.0", "inflection==1.0"]
    assert pip.dry_runs == 4  # all at once, then a, a+b, a+c
    # A conflict is lasting: the next start reuses the outcome.
    assert layer(tmp_path, ScriptedPip()).prepare(wanted).cached


def test_a_pack_pip_could_not_reach_is_refused_and_tried_again_at_the_next_start(tmp_path):
    wanted = requirements(tmp_path, a="colorama\n", b="private-package\n")

    first = layer(tmp_path, ScriptedPip(unreachable=frozenset({"private-package"}))).prepare(wanted)
    assert first.refused == {"b": "its requirements cannot be installed beside the image's: "
                                  "No matching distribution found for private-package"}  # fmt: skip
    assert first.site is not None
    assert (first.site / "colorama").is_dir()

    pip = ScriptedPip()
    second = layer(tmp_path, pip).prepare(wanted)
    assert pip.dry_runs == 1
    assert not second.cached
    assert second.refused == {}
    assert second.installed == ["colorama==1.0", "private-package==1.0"]


def test_unused_layers_and_dead_workers_partial_ones_are_removed(tmp_path):
    now = 1e9
    old = layer(tmp_path, ScriptedPip(), now).prepare(requirements(tmp_path, a="colorama\n"))
    assert old.site is not None
    record = old.site.parent / requirements_layer.LAYER_RECORD
    os.utime(record, (now - 15 * 86400, now - 15 * 86400))
    partial = tmp_path / "envs" / ".0123.partial-dead"
    partial.mkdir()
    os.utime(partial, (now - 7200, now - 7200))
    fresh_partial = tmp_path / "envs" / ".4567.partial-alive"
    fresh_partial.mkdir()

    new = layer(tmp_path, ScriptedPip(), now).prepare(requirements(tmp_path, a="inflection\n"))

    assert new.site is not None
    assert new.site.is_dir()
    assert not old.site.exists()
    assert not partial.exists()
    assert fresh_partial.exists()


def test_an_unreadable_requirements_file_refuses_its_pack_only(tmp_path):
    wanted = requirements(tmp_path, a="colorama\n")
    wanted["gone"] = tmp_path / "nowhere" / "requirements.txt"

    outcome = layer(tmp_path, ScriptedPip()).prepare(wanted)

    assert outcome.refused == {"gone": "its requirements.txt cannot be read (No such file or directory)"}
    assert outcome.installed == ["colorama==1.0"]


def test_pip_errors_come_back_as_one_line():
    conflict = "ERROR: Cannot install x\n\nThe conflict is caused by:\n    A wants b<2\n    (constraint) b==3\n\nfix"
    assert requirements_layer.pip_error(conflict) == "A wants b<2; (constraint) b==3"
    assert requirements_layer.pip_error("noise\nERROR: first\nERROR: last\n") == "last"
    assert requirements_layer.pip_error("") == "pip failed"


# -- pins ---------------------------------------------------------------------


def test_a_pack_is_pinned_by_its_marker_its_git_head_or_its_files(tmp_path):
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / PIN_MARKER).write_text(COMMIT + "\n")
    assert pin_of(marked) == COMMIT

    checkout = tmp_path / "checkout"
    (checkout / ".git" / "refs" / "heads").mkdir(parents=True)
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (checkout / ".git" / "refs" / "heads" / "main").write_text("b" * 40 + "\n")
    assert pin_of(checkout) == "b" * 40
    (checkout / ".git" / "refs" / "heads" / "main").unlink()
    (checkout / ".git" / "packed-refs").write_text(f"# pack-refs\n{'c' * 40} refs/heads/main\n")
    assert git_head(checkout) == "c" * 40
    (checkout / ".git" / "HEAD").write_text("d" * 40 + "\n")  # detached
    assert git_head(checkout) == "d" * 40

    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    digest = pin_of(loose)
    assert digest.startswith("files:")
    (loose / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {'X': object}\n")
    assert pin_of(loose) != digest


def test_the_marker_is_the_one_the_volume_install_writes():
    script = Path(__file__).resolve().parents[2] / "scripts" / "image" / "install_custom_nodes.py"
    assert f'PIN_MARKER = "{PIN_MARKER}"' in script.read_text()


# -- the boot step ----------------------------------------------------------------


class NoLayer:
    def __init__(self, refused: dict[str, str] | None = None):
        self.refused = refused or {}
        self.wanted: dict[str, Path] = {}

    def prepare(self, wanted):
        self.wanted = dict(wanted)
        return LayerOutcome(refused=self.refused)


def test_the_boot_step_offers_each_pack_but_a_baked_name_a_wrong_pin_or_an_unmet_requirement(tmp_path):
    packs = tmp_path / "volume" / "ComfyUI" / "custom_nodes"
    for name in ("plain", "baked-too", "pinned", "drifted", "needy", ".hidden", "old.disabled", "__pycache__"):
        (packs / name).mkdir(parents=True)
    (packs / "single_file.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (packs / "notes.txt").write_text("not a pack")
    (packs / "pinned" / PIN_MARKER).write_text(COMMIT)
    (packs / "drifted" / PIN_MARKER).write_text("e" * 40)
    (packs / "needy" / "requirements.txt").write_text("numpy<2\n")
    manifest = [{"name": name, "repo": "https://x", "commit": COMMIT} for name in ("pinned", "drifted", "lost")]
    (packs.parent / "custom_nodes.json").write_text(json.dumps({"custom_nodes": manifest}))
    (tmp_path / "comfyui" / "custom_nodes" / "baked-too").mkdir(parents=True)
    layer = NoLayer({"needy": "its requirements.txt asks to replace the image's packages"})

    report, offered = volume_boot.prepare(packs, tmp_path / "comfyui", layer)  # type: ignore[arg-type]

    assert sorted(offered) == ["pinned", "plain", "single_file.py"]
    assert layer.wanted == {"needy": packs / "needy" / "requirements.txt"}
    refused = {name: pack.refused for name, pack in report.packs.items() if pack.refused}
    assert refused == {
        "baked-too": "a pack of this name is baked into the image; the image's copy loads",
        "drifted": f"the volume's custom_nodes.json pins it at {COMMIT}, but it holds {'e' * 40}",
        "lost": f"the volume's custom_nodes.json pins it at {COMMIT}, but it is not on the volume (see the log above)",
        "needy": "its requirements.txt asks to replace the image's packages",
    }
    assert report.packs["pinned"].pin == COMMIT

    out = tmp_path / "out"
    volume_boot.write_for_comfyui(out, report, offered)
    assert sorted(path.name for path in (out / "custom_nodes").iterdir()) == sorted(offered)
    assert (out / "custom_nodes" / "plain").resolve() == (packs / "plain").resolve()
    assert (out / "paths.yaml").read_text() == f"volume_node_packs:\n  custom_nodes: {out / 'custom_nodes'}\n"
    assert (out / "pythonpath").read_text() == ""
    assert VolumePacks.read(out / "report.json") == report


def test_the_boot_step_exits_0_with_nothing_on_the_volume_and_1_when_it_cannot_write(tmp_path, monkeypatch):
    monkeypatch.setattr(volume_boot, "RequirementsLayer", lambda envs: NoLayer())
    arguments = ["--packs", str(tmp_path / "none"), "--comfyui", str(tmp_path), "--envs", str(tmp_path / "envs")]
    assert volume_boot.main([*arguments, "--out", str(tmp_path / "out")]) == 0
    assert VolumePacks.read(tmp_path / "out" / "report.json") == VolumePacks({}, None)
    (tmp_path / "file").write_text("")
    assert volume_boot.main([*arguments, "--out", str(tmp_path / "file" / "out")]) == 1


# -- what became of them ----------------------------------------------------------


REPORT = VolumePacks(
    {
        "good": PackOnVolume(COMMIT),
        "one_file.py": PackOnVolume("files:4"),
        "web-only": PackOnVolume("files:1"),
        "broken": PackOnVolume("files:2"),
        "conflicting": PackOnVolume("files:3", "its requirements.txt asks to replace numpy"),
    }
)


def test_states_say_loaded_failed_or_refused_with_the_reason():
    states = REPORT.states({"good": 3, "one_file": 1}, {"broken": "No module named 'x'"})
    assert states == {
        "broken": {"state": "failed", "pin": "files:2", "nodes": 0, "error": "No module named 'x'"},
        "conflicting": {"state": "refused", "pin": "files:3", "nodes": 0,
                        "error": "its requirements.txt asks to replace numpy"},
        "good": {"state": "loaded", "pin": COMMIT, "nodes": 3},
        "one_file.py": {"state": "loaded", "pin": "files:4", "nodes": 1},  # its module is "one_file"
        "web-only": {"state": "loaded", "pin": "files:1", "nodes": 0},
    }  # fmt: skip
    assert REPORT.without_nodes({"good": 3, "one_file": 1}) == ["web-only", "broken"]
    unread = REPORT.states({"good": 3, "one_file": 1}, None)
    assert unread["web-only"]["state"] == "failed"
    assert unread["broken"]["error"] == "it brought no node types; ComfyUI's log says why"


def test_a_report_that_cannot_be_read_is_no_packs(tmp_path, caplog):
    (tmp_path / "report.json").write_text("{not json")
    assert VolumePacks.read(tmp_path / "report.json") == VolumePacks()
    assert "cannot be read" in caplog.text
    assert VolumePacks.read(None) == VolumePacks()


def test_comfyuis_log_names_the_packs_it_did_not_load():
    log = (
        "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'x'\n"
        "Cannot import /vol/links/broken module for custom nodes: No module named 'x'\n"
        "Skip /vol/links/empty module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or NODES_LIST.\n"
        "   0.0 seconds (IMPORT FAILED): /vol/links/broken\n"
    )
    assert import_errors(log) == {
        "broken": "No module named 'x'",
        "empty": "it declares no NODE_CLASS_MAPPINGS (nor comfy_entrypoint)",
    }


@pytest.fixture
def volume_settings(tmp_path) -> Settings:
    report = tmp_path / "report.json"
    REPORT.write(report)
    (tmp_path / "comfyui" / "custom_nodes").mkdir(parents=True)
    return Settings.from_env({"COMFYUI_PATH": str(tmp_path / "comfyui"), "VOLUME_NODE_PACKS": str(report)})


async def test_list_nodes_reports_the_volume_packs_and_reads_comfyuis_log_only_when_one_brought_nothing(
    tmp_path, volume_settings
):
    object_info = {
        **OBJECT_INFO,
        "GoodNode": {"input": {"required": {}}, "output": [], "python_module": "custom_nodes.good"},
        "WebOnly": {"input": {"required": {}}, "output": [], "python_module": "custom_nodes.web-only"},
    }
    comfy = FakeComfy(tmp_path / "comfyui", object_info)
    comfy.import_errors = {"broken": "No module named 'x'"}
    capabilities = ComfyCapabilities.built(comfy, volume_settings, object_info)

    answer = await capabilities.answer_list("nodes")

    assert answer["node_packs"]["good"] == ["GoodNode"]
    assert answer["volume_packs"]["broken"] == {
        "state": "failed", "pin": "files:2", "nodes": 0, "error": "No module named 'x'"
    }  # fmt: skip
    assert answer["volume_packs"]["good"]["state"] == "loaded"
    assert answer["volume_packs"]["conflicting"]["state"] == "refused"
    assert comfy.calls.count("custom_node_import_errors") == 1

    del object_info["WebOnly"]
    comfy.import_errors = {}
    all_loaded = ComfyCapabilities.built(comfy, volume_settings, {**object_info, "B": object_info["GoodNode"]})
    all_loaded.volume_packs = VolumePacks({"good": PackOnVolume(COMMIT)})
    assert (await all_loaded.answer_list("nodes"))["volume_packs"]["good"]["nodes"] == 2
    assert comfy.calls.count("custom_node_import_errors") == 1  # every pack brought nodes: no log read


def test_the_node_snapshot_is_not_trusted_once_the_volume_packs_change(tmp_path, volume_settings):
    comfyui_path, report = volume_settings.comfyui_path, volume_settings.volume_node_packs
    assert report is not None
    snapshot = tmp_path / "snapshot.json"
    nodes_snapshot.save(snapshot, comfyui_path, OBJECT_INFO, report)
    assert nodes_snapshot.load(snapshot, comfyui_path, report) == OBJECT_INFO

    VolumePacks({"good": PackOnVolume("f" * 40)}).write(report)

    assert nodes_snapshot.load(snapshot, comfyui_path, report) is None
    assert nodes_snapshot.load(snapshot, comfyui_path, None) is None


def test_the_image_packages_read_from_folder_names_are_what_importlib_metadata_says():
    expected: dict[str, str] = {}
    for dist in metadata.distributions():
        expected.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
    assert requirements_layer.image_packages() == expected
    assert "packaging" in expected


def test_an_included_requirements_file_is_checked_and_keys_the_layer(tmp_path):
    wanted = requirements(tmp_path, a="-r more.txt\n")
    (tmp_path / "packs" / "a" / "more.txt").write_text("numpy<2\n")

    outcome = layer(tmp_path, ScriptedPip()).prepare(wanted)
    assert "'numpy<2' conflicts with the image's numpy==2.1.3" in outcome.refused["a"]

    (tmp_path / "packs" / "a" / "more.txt").write_text("colorama\n")
    pip = ScriptedPip()
    assert layer(tmp_path, pip).prepare(wanted).installed == ["colorama==1.0"]
    assert pip.dry_runs == 1  # a new key: the earlier outcome is not reused


def test_a_volume_the_layer_cannot_be_written_to_refuses_the_packs_that_need_it_and_says_why(tmp_path):
    (tmp_path / "envs").write_text("a file where the layers' folder should be")
    wanted = requirements(tmp_path, a="colorama\n")

    outcome = layer(tmp_path, ScriptedPip()).prepare(wanted)

    assert outcome.site is None
    assert outcome.refused == {"a": "its requirements cannot be installed: the layer cannot be written (File exists)"}
