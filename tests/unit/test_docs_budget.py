"""README is the front door: it stays short (the reference lives in docs/)."""

from tests.support.workflows import REPO_ROOT

README_MAX_LINES = 250


def test_readme_stays_within_its_budget():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md is {len(lines)} lines: move reference to docs/"
