"""Tools some tests need beyond Python (scripts/dev/setup_test_tools.sh installs them)."""

from __future__ import annotations

import os

import pytest


def missing(what: str) -> None:
    """Skip on a developer's machine without the tool; in CI (CI set) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: scripts/dev/setup_test_tools.sh installs it")
    pytest.skip(f"{what} is missing: run scripts/dev/setup_test_tools.sh")


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}
"""Lets tests commit in repositories of their own where git has no user set."""
