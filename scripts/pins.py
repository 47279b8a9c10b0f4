"""Print pinned requirements from pyproject.toml, one per line, for pip or uv:

    python scripts/pins.py cpu client dev      # these extras of [project.optional-dependencies]
    python scripts/pins.py --lock-excludes     # [tool.comfy-worker] lock-excludes

pyproject.toml holds every pin once (the worker's own are in requirements.txt, read
there as the package's dependencies); shell scripts that install or lock use this.
Standard library only, so it runs before any environment exists.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def main(args: list[str]) -> int:
    config = tomllib.loads(PYPROJECT.read_text())
    if args == ["--lock-excludes"]:
        lines = config["tool"]["comfy-worker"]["lock-excludes"]
    else:
        extras = config["project"]["optional-dependencies"]
        unknown = [name for name in args if name not in extras]
        if not args or unknown:
            sys.stderr.write(f"usage: pins.py EXTRA... (one of {', '.join(extras)}) | --lock-excludes\n")
            return 2
        lines = [pin for name in args for pin in extras[name]]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
