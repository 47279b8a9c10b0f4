"""scripts/image/check_comfyui.py, the image build's proof of its ComfyUI, run as the
Dockerfile runs it: against the real tree, and against trees the worker cannot drive."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.comfyui_server import COMFYUI_DIR, COMFYUI_PYTHON
from tests.support.shipped_workflows import REPO_ROOT, SHIPPED, baked_checkpoint

CHECK = REPO_ROOT / "scripts" / "image" / "check_comfyui.py"
BOUND_S = 600  # ComfyUI's start and three small jobs; only a hang reaches it


def check(tree: Path, workflows: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(CHECK), "--comfyui", str(tree), "--workflows", str(workflows)]
    command += ["--python", str(COMFYUI_PYTHON), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=BOUND_S, check=False)


def tree_copy(target: Path) -> Path:
    """The tests' ComfyUI tree without its models and user data (the check brings its own model)."""
    data = {"models", "output", "temp", "input", "user"}

    def skip(folder: str, names: list[str]) -> set[str]:
        return {name for name in names if name == "__pycache__" or (Path(folder) == COMFYUI_DIR and name in data)}

    shutil.copytree(COMFYUI_DIR, target, ignore=skip, symlinks=True)
    return target


def files_in(tree: Path) -> set[Path]:
    return {path for folder in ("input", "output", "temp") for path in (tree / folder).rglob("*") if path.is_file()}


@pytest.mark.integration
def test_the_pinned_comfyui_passes_and_its_node_list_is_kept(tmp_path):
    tree = tree_copy(tmp_path / "ComfyUI")  # no models of its own: the check brings one
    empty = tmp_path / "workflows"
    empty.mkdir()

    run = check(tree, empty, "--save-snapshot", str(tmp_path / "object-info.json"))

    assert run.returncode == 0, run.stderr[-4000:]
    assert "a job ran with progress and outputs from `executed`, a cancel left ComfyUI idle" in run.stderr
    assert "history entries deleted, a UI-format workflow converted and ran, no file left behind" in run.stderr
    snapshot = json.loads((tmp_path / "object-info.json").read_text())["object_info"]
    assert "KSampler" in snapshot
    offered = snapshot["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert offered == [], "the check's own checkpoint is not in the node list the image keeps"
    assert files_in(tree) == set(), "no job file is left in the tree"


@pytest.mark.integration
def test_a_comfyui_whose_websocket_never_sends_executed_fails_naming_the_event(tmp_path):
    tree = tree_copy(tmp_path / "ComfyUI")
    execution = tree / "execution.py"
    source = execution.read_text()
    assert source.count('send_sync("executed",') >= 1, "the tree sends `executed` where this test expects it"
    execution.write_text(source.replace('send_sync("executed",', 'send_sync("executed_renamed",'))
    empty = tmp_path / "workflows"
    empty.mkdir()

    run = check(tree, empty, "--save-snapshot", str(tmp_path / "object-info.json"))

    assert run.returncode == 1, run.stderr[-4000:]
    assert "the worker cannot drive this ComfyUI: the txt2img job returned no image" in run.stderr
    assert "ComfyUI's websocket sent no `executed` event for its prompt" in run.stderr
    assert not (tmp_path / "object-info.json").exists(), "no node list is kept for a ComfyUI that failed"


@pytest.mark.integration
def test_a_comfyui_without_the_history_delete_fails_naming_the_endpoint(tmp_path):
    tree = tree_copy(tmp_path / "ComfyUI")
    server = tree / "server.py"
    source = server.read_text()
    head, route, handler = source.partition('@routes.post("/history")')
    assert route, "the tree deletes where this test expects"
    assert "self.prompt_queue.delete_history_item(" in handler, "the tree deletes where this test expects"
    server.write_text(head + route + handler.replace("self.prompt_queue.delete_history_item(", "(lambda _: None)(", 1))
    empty = tmp_path / "workflows"
    empty.mkdir()

    run = check(tree, empty)

    assert run.returncode == 1, run.stderr[-4000:]
    assert "POST /history {'delete': [...]} left prompt" in run.stderr


@pytest.mark.integration
def test_a_shipped_workflow_naming_a_checkpoint_the_image_lacks_fails_naming_it():
    # The shipped files as they are: the tests' ComfyUI lacks the image's checkpoint.
    run = check(COMFYUI_DIR, SHIPPED)
    assert run.returncode == 1, run.stderr[-2000:]
    assert (
        f"txt2img.json: node 4 'Load Checkpoint' (CheckpointLoaderSimple) input 'ckpt_name': '{baked_checkpoint()}'"
        in run.stderr
    )


@pytest.mark.integration
def test_a_launch_flag_the_pinned_comfyui_lacks_fails_naming_it(tmp_path):
    launch_args = tmp_path / "launch.args"
    launch_args.write_text((REPO_ROOT / "ComfyUI" / "launch.args").read_text() + "--no-such-comfyui-flag\n")
    empty = tmp_path / "workflows"
    empty.mkdir()

    run = check(COMFYUI_DIR, empty, "--launch-args", str(launch_args))

    assert run.returncode != 0
    assert "ComfyUI did not start" in run.stderr, run.stderr[-2000:]
    assert "--no-such-comfyui-flag" in run.stderr, run.stderr[-2000:]
