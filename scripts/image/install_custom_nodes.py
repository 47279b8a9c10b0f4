"""Install the custom nodes pinned in ComfyUI/custom_nodes.json into a ComfyUI tree.

    python scripts/image/install_custom_nodes.py --lock ComfyUI/custom_nodes.json --comfyui /comfyui

For each node: clone its repository, check out the pinned commit (submodules too),
remove .git (the image holds exactly that commit's files), install its
requirements.txt with the already-installed torch packages held fixed, and then
load every node with ComfyUI's own loader (scripts/image/check_custom_nodes.py). Any
failure stops the build with the node's name and what failed, instead of a node
that silently fails to import when the first job arrives.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# manifests.py sits beside this script, and a script's folder is on its import path.
from manifests import CustomNode, ManifestError, load_custom_nodes

log = logging.getLogger("install_custom_nodes")
# Packages a node's requirements must not replace: the image's CUDA build of torch.
HELD_PACKAGES = ("torch", "torchvision", "torchaudio", "xformers")


class InstallError(Exception):
    pass


def run(command: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise InstallError(f"{what} failed:\n    " + "\n    ".join(output))


def install_node(node: CustomNode, custom_nodes_dir: Path, python: str, constraints: Path) -> None:
    target = custom_nodes_dir / node.name
    if target.exists():
        shutil.rmtree(target)
    run(["git", "clone", "--quiet", "--no-checkout", node.repo, str(target)], f"git clone {node.repo}")
    run(["git", "checkout", "--quiet", "--detach", node.commit], f"checkout of commit {node.commit}", cwd=target)
    run(["git", "submodule", "update", "--quiet", "--init", "--recursive"], "submodule update", cwd=target)
    shutil.rmtree(target / ".git")
    requirements = target / "requirements.txt"
    if requirements.exists():
        run(
            [python, "-m", "pip", "install", "--quiet", "-r", str(requirements), "-c", str(constraints)],
            "pip install -r requirements.txt",
        )


def held_constraints(python: str, folder: Path) -> Path:
    """A pip constraints file pinning whatever torch packages are installed now."""
    freeze = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    held = [line for line in freeze.splitlines() if line.split("==")[0].lower() in HELD_PACKAGES]
    path = folder / "held-constraints.txt"
    path.write_text("\n".join(held) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI's folder")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs ComfyUI")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[install_custom_nodes] %(message)s")

    try:
        nodes = load_custom_nodes(args.lock)
    except ManifestError as exc:
        log.error("%s", exc)
        return 1
    custom_nodes_dir = args.comfyui / "custom_nodes"
    custom_nodes_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        constraints = held_constraints(args.python, Path(scratch))
        for node in nodes:
            log.info("installing %s at %s", node.name, node.commit[:12])
            try:
                install_node(node, custom_nodes_dir, args.python, constraints)
            except InstallError as exc:
                log.error("custom node '%s' (%s@%s): %s", node.name, node.repo, node.commit, exc)
                return 1
    if nodes:
        check = [args.python, str(Path(__file__).with_name("check_custom_nodes.py")), "--comfyui", str(args.comfyui)]
        importable = {**os.environ, "PYTHONPATH": str(args.comfyui)}  # ComfyUI's modules are not a package
        if subprocess.run(check + [node.name for node in nodes], env=importable).returncode != 0:
            return 1
    log.info("%d custom node(s) installed and loaded", len(nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
