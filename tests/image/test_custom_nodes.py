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
