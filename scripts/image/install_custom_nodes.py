"""Install the custom nodes pinned in a custom_nodes.json: into the image, or onto a network volume.

    python scripts/image/install_custom_nodes.py --lock ComfyUI/custom_nodes.json --comfyui /comfyui
    python scripts/image/install_custom_nodes.py --lock /runpod-volume/ComfyUI/custom_nodes.json \
        --into /runpod-volume/ComfyUI/custom_nodes

Into the image (--comfyui, the build): for each node clone its repository, check out
the pinned commit (submodules too), remove .git (the image holds exactly that commit's
files), install its requirements.txt with the already-installed torch packages held
fixed, and then load every node with ComfyUI's own loader
(scripts/image/check_custom_nodes.py). Any failure stops the build with the node's name
and what failed, instead of a node that silently fails to import when the first job
arrives.

Onto a volume (--into, start.sh at every start): only the files. A node whose folder
holds the pinned commit (its PIN_MARKER file says so) is left alone, so a later start
costs a read per node; a missing one, or one this script put there at another commit,
is fetched at the pinned commit beside it and swapped in, so a worker starting at the
same moment never loads half a checkout. A folder the user put there (no marker) is
never replaced: unless it is a git checkout of the pinned commit, it is logged as not
pinned and the worker refuses it (comfy_worker/node_packs). A node that cannot be
fetched is logged with its name and the others go on; requirements are the worker's
(its cached layer on the volume, never the image's packages).
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
# The commit a volume node's folder holds, written by --into (comfy_worker/node_packs reads it).
PIN_MARKER = ".comfy-worker-commit"


class InstallError(Exception):
    pass


def run(command: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise InstallError(f"{what} failed:\n    " + "\n    ".join(output))


def fetch_node(node: CustomNode, target: Path) -> None:
    """The node's files at its pinned commit in `target` (a new folder), without .git."""
    run(["git", "clone", "--quiet", "--no-checkout", node.repo, str(target)], f"git clone {node.repo}")
    run(["git", "checkout", "--quiet", "--detach", node.commit], f"checkout of commit {node.commit}", cwd=target)
    run(["git", "submodule", "update", "--quiet", "--init", "--recursive"], "submodule update", cwd=target)
    shutil.rmtree(target / ".git")


def install_node(node: CustomNode, custom_nodes_dir: Path, python: str, constraints: Path) -> None:
    target = custom_nodes_dir / node.name
    if target.exists():
        shutil.rmtree(target)
    fetch_node(node, target)
    requirements = target / "requirements.txt"
    if requirements.exists():
        run(
            [python, "-m", "pip", "install", "--quiet", "-r", str(requirements), "-c", str(constraints)],
            "pip install -r requirements.txt",
        )


def pinned_commit(folder: Path) -> str | None:
    """The commit a volume node's folder holds: its marker, else its git checkout's HEAD."""
    try:
        return (folder / PIN_MARKER).read_text().strip()
    except OSError:
        pass
    if not (folder / ".git").exists():
        return None
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    return head.stdout.strip() if head.returncode == 0 else None


def place_on_volume(node: CustomNode, custom_nodes_dir: Path) -> None:
    """`custom_nodes_dir/<name>` at the pinned commit, fetched beside it and swapped in."""
    target = custom_nodes_dir / node.name
    held = pinned_commit(target) if target.exists() else None
    if held == node.commit:
        return
    if target.exists() and not (target / PIN_MARKER).exists():
        raise InstallError(
            f"the folder on the volume holds {f'commit {held}' if held else 'files of no known commit'}, not the "
            "pinned one; it is not replaced (remove it, and the next start fetches the pinned commit)"
        )
    log.info("fetching %s at %s onto the volume", node.name, node.commit[:12])
    partial = Path(tempfile.mkdtemp(prefix=f".{node.name}.partial-", dir=custom_nodes_dir))
    try:
        partial.rmdir()  # git clone makes the folder itself
        fetch_node(node, partial)
        (partial / PIN_MARKER).write_text(node.commit + "\n")
        old = partial.with_name(partial.name.replace(".partial-", ".old-"))
        if target.exists():
            target.rename(old)
        try:
            partial.rename(target)
        except OSError:  # another worker placed it at this moment: theirs is as good
            log.info("%s was placed by another worker meanwhile", node.name)
    finally:
        for leftover in (partial, partial.with_name(partial.name.replace(".partial-", ".old-"))):
            shutil.rmtree(leftover, ignore_errors=True)


def place_all_on_volume(nodes: list[CustomNode], custom_nodes_dir: Path) -> int:
    """--into: each node at its pinned commit; one that cannot be is logged, the others go on."""
    custom_nodes_dir.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        try:
            place_on_volume(node, custom_nodes_dir)
        except (InstallError, OSError) as exc:
            log.error("volume custom node '%s' (%s@%s): %s", node.name, node.repo, node.commit, exc)
    return 0


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
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--comfyui", type=Path, help="ComfyUI's folder (the image build)")
    where.add_argument("--into", type=Path, help="a network volume's custom_nodes folder: files only")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs ComfyUI")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[install_custom_nodes] %(message)s")

    try:
        nodes = load_custom_nodes(args.lock)
    except ManifestError as exc:
        log.error("%s", exc)
        return 1
    if args.into is not None:
        return place_all_on_volume(nodes, args.into)
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
