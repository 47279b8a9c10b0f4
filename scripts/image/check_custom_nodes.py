"""Load custom nodes with ComfyUI's own loader and fail, naming them, if any does not load.

    PYTHONPATH=/comfyui python scripts/image/check_custom_nodes.py --comfyui /comfyui NAME [NAME ...]

Runs on the CPU (the image build has no GPU). A node loads when its module imports
and it declares NODE_CLASS_MAPPINGS, exactly what ComfyUI checks at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("check_custom_nodes")


async def load_all(comfyui: Path, names: list[str]) -> list[str]:
    os.chdir(comfyui)  # ComfyUI resolves its folders from here; its modules come from PYTHONPATH
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # read at import time by comfy.model_management
    import nodes

    failed = []
    for name in names:
        if not await nodes.load_custom_node(str(comfyui / "custom_nodes" / name)):
            failed.append(name)
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True)
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[check_custom_nodes] %(message)s")
    failed = asyncio.run(load_all(args.comfyui.resolve(), args.names))
    if failed:
        log.error("custom node(s) failed to load: %s (ComfyUI's traceback is above)", ", ".join(failed))
        return 1
    log.info("all %d custom node(s) load", len(args.names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
