"""The pre-commit hooks run what CI lints (scripts/ci/test.sh), and the config is valid."""

import subprocess
import sys

import yaml

from tests.support.workflows import REPO_ROOT


def test_the_hooks_are_valid_and_cover_cis_lints():
    config = REPO_ROOT / ".pre-commit-config.yaml"
    check = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(config)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    entries = " ".join(hook["entry"] for repo in yaml.safe_load(config.read_text())["repos"] for hook in repo["hooks"])
    ci = (REPO_ROOT / "scripts" / "ci" / "test.sh").read_text()
    lints = ("ruff check", "ruff format", "mypy", "flavours.py check", "comfy_worker.core.contract check", "hadolint")
    for tool in (*lints, "shellcheck"):
        assert tool in ci, tool
        assert tool in entries, tool
