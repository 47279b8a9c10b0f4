"""Every dependency is pinned once, in one place per audience (scripts/pins.py lists them)."""

import re
import subprocess
import sys

from tests.support.workflows import REPO_ROOT


def listed(*args: str) -> list[str]:
    command = [sys.executable, "scripts/pins.py", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.splitlines()


def name(pin: str) -> str:
    return re.split(r"[\[=<>!~ ]", pin, maxsplit=1)[0].lower().replace("_", "-")


def test_each_package_is_pinned_exactly_once_across_the_audiences():
    worker = [line for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if line[:1].isalnum()]
    extras = listed("client", "dev") + listed("cpu")  # cuda pins the same names as cpu, for the image
    pins = worker + extras + [p for p in listed("cuda") if name(p) not in {name(c) for c in listed("cpu")}]
    assert all("==" in pin for pin in pins), [pin for pin in pins if "==" not in pin]
    names = [name(pin) for pin in pins]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


def test_an_unknown_audience_is_refused_with_the_known_ones():
    result = subprocess.run([sys.executable, "scripts/pins.py", "gpu"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "one of client, cuda, cuda128, cpu, local, dev" in result.stderr
