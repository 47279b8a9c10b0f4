"""scripts/image/install_custom_nodes.py against local git repositories and the real pinned ComfyUI."""

import json

from tests.support.comfyui_server import COMFYUI_DIR, PYTHON

from .conftest import run_script

GOOD_NODE = """
class Echo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"
    def run(self, text):
        return (text,)

NODE_CLASS_MAPPINGS = {"TestEcho": Echo}
"""


def install(tmp_path, entries):
    lock = tmp_path / "custom_nodes.json"
    lock.write_text(json.dumps({"custom_nodes": entries}))
    comfyui = tmp_path / "comfyui"
    # A ComfyUI tree whose custom_nodes/ is ours: link the pinned tree's files.
    comfyui.mkdir()
    for item in COMFYUI_DIR.iterdir():
        if item.name != "custom_nodes":
            (comfyui / item.name).symlink_to(item)
    result = run_script(
        "scripts/image/install_custom_nodes.py", "--lock", str(lock), "--comfyui", str(comfyui), "--python", str(PYTHON)
    )
    return result, comfyui / "custom_nodes"


def test_installs_the_pinned_commit_without_git_and_loads_it(tmp_path, git_repo):
    repo, commit = git_repo("echo-node", {"__init__.py": GOOD_NODE, "requirements.txt": "pyyaml\n"})

    result, custom_nodes = install(tmp_path, [{"name": "echo-node", "repo": repo, "commit": commit}])

    assert result.returncode == 0, result.stderr
    assert (custom_nodes / "echo-node" / "__init__.py").read_text() == GOOD_NODE
    assert not (custom_nodes / "echo-node" / ".git").exists()
    assert "all 1 custom node(s) load" in result.stderr


def test_a_node_that_fails_to_import_fails_the_build_with_its_name(tmp_path, git_repo):
    good_repo, good_commit = git_repo("fine", {"__init__.py": GOOD_NODE})
    bad_repo, bad_commit = git_repo("broken", {"__init__.py": "import module_that_does_not_exist\n"})

    result, _ = install(
        tmp_path,
        [
            {"name": "fine", "repo": good_repo, "commit": good_commit},
            {"name": "broken", "repo": bad_repo, "commit": bad_commit},
        ],
    )

    assert result.returncode != 0
    assert "failed to load: broken" in result.stderr
    assert "module_that_does_not_exist" in result.stdout + result.stderr


def test_an_unknown_commit_fails_with_the_node_name(tmp_path, git_repo):
    repo, _ = git_repo("echo-node", {"__init__.py": GOOD_NODE})

    result, _ = install(tmp_path, [{"name": "echo-node", "repo": repo, "commit": "f" * 40}])

    assert result.returncode != 0
    assert "custom node 'echo-node'" in result.stderr
    assert f"checkout of commit {'f' * 40} failed" in result.stderr


def test_requirements_that_cannot_install_fail_with_the_node_name(tmp_path, git_repo):
    repo, commit = git_repo("needy", {"__init__.py": GOOD_NODE, "requirements.txt": "torch==0.0.1\n"})

    result, _ = install(tmp_path, [{"name": "needy", "repo": repo, "commit": commit}])

    assert result.returncode != 0
    assert "custom node 'needy'" in result.stderr
    assert "pip install -r requirements.txt failed" in result.stderr


def place_on_volume(tmp_path, entries):
    lock = tmp_path / "volume-custom_nodes.json"
    lock.write_text(json.dumps({"custom_nodes": entries}))
    into = tmp_path / "volume" / "ComfyUI" / "custom_nodes"
    return run_script("scripts/image/install_custom_nodes.py", "--lock", str(lock), "--into", str(into)), into


def test_onto_a_volume_a_pinned_node_is_fetched_once_and_replaced_only_when_the_pin_moves(tmp_path, git_repo):
    repo, commit = git_repo("echo-node", {"__init__.py": GOOD_NODE, "requirements.txt": "pyyaml\n"})
    entry = {"name": "echo-node", "repo": repo, "commit": commit}

    first, into = place_on_volume(tmp_path, [entry])

    assert first.returncode == 0, first.stderr
    assert "fetching echo-node" in first.stderr
    assert (into / "echo-node" / "__init__.py").read_text() == GOOD_NODE
    assert (into / "echo-node" / ".comfy-worker-commit").read_text() == commit + "\n"
    assert not (into / "echo-node" / ".git").exists()
    assert sorted(path.name for path in into.iterdir()) == ["echo-node"]  # nothing partial left
    assert "pip" not in first.stderr  # requirements are the worker's layer, not the image's

    again, _ = place_on_volume(tmp_path, [entry])
    assert again.returncode == 0
    assert "fetching" not in again.stderr

    newer_repo, newer = git_repo("echo-node-2", {"__init__.py": GOOD_NODE.replace("hi", "hello")})
    moved, _ = place_on_volume(tmp_path, [{"name": "echo-node", "repo": newer_repo, "commit": newer}])
    assert moved.returncode == 0, moved.stderr
    assert (into / "echo-node" / ".comfy-worker-commit").read_text() == newer + "\n"
    assert '"hello"' in (into / "echo-node" / "__init__.py").read_text()
    assert sorted(path.name for path in into.iterdir()) == ["echo-node"]


def test_onto_a_volume_a_users_own_folder_is_never_replaced_and_a_bad_pin_stops_only_its_node(tmp_path, git_repo):
    repo, commit = git_repo("echo-node", {"__init__.py": GOOD_NODE})
    into = tmp_path / "volume" / "ComfyUI" / "custom_nodes"
    (into / "hand-made").mkdir(parents=True)
    (into / "hand-made" / "__init__.py").write_text("# the user's own\n")
    entries = [
        {"name": "hand-made", "repo": repo, "commit": commit},
        {"name": "unknown-commit", "repo": repo, "commit": "f" * 40},
        {"name": "echo-node", "repo": repo, "commit": commit},
    ]

    result, _ = place_on_volume(tmp_path, entries)

    assert result.returncode == 0
    assert (into / "hand-made" / "__init__.py").read_text() == "# the user's own\n"
    assert "volume custom node 'hand-made'" in result.stderr
    assert "holds files of no known commit, not the pinned one; it is not replaced" in result.stderr
    assert f"volume custom node 'unknown-commit' ({repo}@{'f' * 40}): checkout of commit" in result.stderr
    assert (into / "echo-node" / ".comfy-worker-commit").read_text() == commit + "\n"
    assert sorted(path.name for path in into.iterdir()) == ["echo-node", "hand-made"]
