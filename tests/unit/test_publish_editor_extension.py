"""scripts/publish_editor_extension.sh: the editor extension's folder as the root of its own
branch, one commit per change of the folder (installing it is tested in
tests/integration/test_editor_extension.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.tools import GIT_IDENTITY
from tests.support.workflows import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "publish_editor_extension.sh"
ENVIRONMENT = {**os.environ, **GIT_IDENTITY}


def git(repository: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repository, env=ENVIRONMENT, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit(repository: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repository / name).parent.mkdir(parents=True, exist_ok=True)
        (repository / name).write_text(text)
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", "change")


def publish(repository: Path) -> str:
    done = subprocess.run(["bash", str(SCRIPT)], cwd=repository, env=ENVIRONMENT, check=True, capture_output=True)
    return done.stdout.decode()


def test_the_branch_holds_the_folder_at_its_root_and_moves_only_when_the_folder_changes(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    extension = {"editor_extension/__init__.py": "one", "editor_extension/web/a.js": "a"}
    commit(tmp_path, {**extension, "comfy_worker_client/endpoint.py": "c", "rp_handler.py": "w"})

    assert "is now" in publish(tmp_path)
    listed = git(tmp_path, "ls-tree", "-r", "--name-only", "editor-extension").split()
    assert listed == ["__init__.py", "comfy_worker_client/endpoint.py", "web/a.js"], "the client vendored inside"
    assert git(tmp_path, "status", "--porcelain") == "", "the working tree and index untouched"
    first = git(tmp_path, "rev-parse", "editor-extension")

    commit(tmp_path, {"rp_handler.py": "worker only"})
    assert "up to date" in publish(tmp_path)
    assert git(tmp_path, "rev-parse", "editor-extension") == first

    commit(tmp_path, {"editor_extension/__init__.py": "two"})
    publish(tmp_path)
    assert git(tmp_path, "rev-parse", "editor-extension^") == first
    assert git(tmp_path, "show", "editor-extension:__init__.py") == "two"
    commit(tmp_path, {"comfy_worker_client/endpoint.py": "client change"})
    publish(tmp_path)
    assert git(tmp_path, "show", "editor-extension:comfy_worker_client/endpoint.py") == "client change"
    assert git(tmp_path, "log", "-1", "--format=%s", "editor-extension").endswith(
        git(tmp_path, "rev-parse", "--short", "HEAD")
    )


def test_the_documented_install_by_copy_installs_the_extension_from_the_repository_as_published(tmp_path):
    """16: the docs lead with a route that needs no published branch: the commands of
    docs/editor.md's install block, run against a clone of this working tree."""
    published = tmp_path / "published"
    git(tmp_path, "clone", "-q", "--no-local", str(REPO_ROOT), str(published))
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "custom_nodes").mkdir(parents=True)
    docs = (REPO_ROOT / "docs" / "editor.md").read_text()
    block = docs.split("<!-- install-by-copy -->\n```bash\n", 1)[1].split("```", 1)[0]
    script = (
        block.replace("https://github.com/<owner>/<repository>", str(published))
        .replace("/path/to/ComfyUI", str(comfyui))
        .replace("/tmp/comfyui-worker", str(tmp_path / "comfyui-worker"))
    )
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True, capture_output=True)

    installed = comfyui / "custom_nodes" / "runpod-run"
    assert (installed / "__init__.py").is_file()
    assert (installed / "bridge.py").is_file()
    assert (installed / "comfy_worker_client" / "endpoint.py").is_file()
    assert (installed / "web" / "runpod_run.js").is_file()
    assert not (tmp_path / "comfyui-worker").exists(), "the clone is removed"
