"""Image build steps run here as the Dockerfile runs them, against local stand-ins:
a git repository for custom nodes, a Hugging Face-compatible endpoint for models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def git_repo(tmp_path):
    """Make a git repository holding the given files; returns (url, commit)."""

    def make(name: str, files: dict[str, str]) -> tuple[str, str]:
        repo = tmp_path / "sources" / name
        repo.mkdir(parents=True)
        for relative, text in files.items():
            (repo / relative).write_text(text)
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "node"], check=True)
        commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
        return f"file://{repo}", commit

    return make
