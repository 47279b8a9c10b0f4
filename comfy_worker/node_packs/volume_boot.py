"""start.sh's boot step for the node packs on the network volume, before ComfyUI starts.

    python -m comfy_worker.node_packs.volume_boot --packs /runpod-volume/ComfyUI/custom_nodes \\
        --comfyui /comfyui --envs /runpod-volume/comfy-worker/node-envs --out DIR

Each pack in `--packs` (a folder, or a single .py file, as ComfyUI takes them; names
starting with "." or "__" and ending in ".disabled" are skipped) is offered to ComfyUI
unless it is refused, with the reason logged and reported:
- a pack of the same name is baked into the image (`--comfyui`'s custom_nodes): the
  image's is the one that loads;
- the volume's manifest (`custom_nodes.json` beside `--packs`, the image's format) pins it
  and the folder holds another commit, or none is there (start.sh ran
  scripts/image/install_custom_nodes.py --into just before; its log says why it failed);
- its requirements.txt cannot be met beside the image's packages (`requirements_layer.py`).

Into `--out` go: `custom_nodes/`, a link per offered pack; `paths.yaml`, which adds that
folder to ComfyUI's custom node folders (--extra-model-paths-config); `pythonpath`, the
requirements layer's folder or nothing (start.sh puts it on ComfyUI's PYTHONPATH); and
`report.json`, the `VolumePacks` the worker reads (VOLUME_NODE_PACKS). It exits 0 whatever
packs it refuses, 1 only when it cannot write these (start.sh then starts ComfyUI without
the volume's packs). Nothing is installed into the image's environment.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .requirements_layer import RequirementsLayer
from .volume_packs import PackOnVolume, VolumePacks, pin_of, pinned_commits

log = logging.getLogger("volume_node_packs")

MANIFEST = "custom_nodes.json"


def pack_folders(packs_dir: Path) -> dict[str, Path]:
    """name -> path of each pack ComfyUI would load from `packs_dir`."""
    found = {}
    for path in sorted(packs_dir.iterdir()) if packs_dir.is_dir() else []:
        name = path.name
        if name.startswith((".", "__")) or name.endswith(".disabled"):
            continue
        if path.is_dir() or path.suffix == ".py":
            found[name] = path
    return found


def prepare(packs_dir: Path, comfyui_path: Path, layer: RequirementsLayer) -> tuple[VolumePacks, dict[str, Path]]:
    """The report of every pack, and name -> path of those ComfyUI may load."""
    folders = pack_folders(packs_dir)
    baked = set(pack_folders(comfyui_path / "custom_nodes"))
    pins = pinned_commits(packs_dir.parent / MANIFEST)
    packs: dict[str, PackOnVolume] = {}
    for name, commit in pins.items():
        if name not in folders:
            why = f"the volume's {MANIFEST} pins it at {commit}, but it is not on the volume (see the log above)"
            packs[name] = PackOnVolume(commit, why)
    for name, path in folders.items():
        pin = pin_of(path)
        if name in baked:
            packs[name] = PackOnVolume(pin, "a pack of this name is baked into the image; the image's copy loads")
        elif name in pins and pin != pins[name]:
            packs[name] = PackOnVolume(pin, f"the volume's {MANIFEST} pins it at {pins[name]}, but it holds {pin}")
        else:
            packs[name] = PackOnVolume(pin)
    needing = {
        name: folders[name] / "requirements.txt"
        for name, pack in packs.items()
        if pack.refused is None and (folders[name] / "requirements.txt").is_file()
    }
    outcome = layer.prepare(needing)
    for name, why in outcome.refused.items():
        packs[name] = PackOnVolume(packs[name].pin, why)
    report = VolumePacks(packs, str(outcome.site) if outcome.site else None)
    return report, {name: folders[name] for name in report.offered}


def write_for_comfyui(out_dir: Path, report: VolumePacks, offered: dict[str, Path]) -> None:
    links = out_dir / "custom_nodes"
    links.mkdir(parents=True, exist_ok=True)
    for name, path in offered.items():
        (links / name).symlink_to(path)
    (out_dir / "paths.yaml").write_text(f"volume_node_packs:\n  custom_nodes: {links}\n")
    (out_dir / "pythonpath").write_text(report.layer or "")
    report.write(out_dir / "report.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=Path, required=True, help="the volume's custom_nodes folder")
    parser.add_argument("--comfyui", type=Path, required=True, help="the image's ComfyUI folder")
    parser.add_argument("--envs", type=Path, required=True, help="where requirements layers are kept")
    parser.add_argument("--out", type=Path, required=True, help="an empty folder for ComfyUI's and the worker's files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[volume node packs] %(message)s")
    started = time.monotonic()
    report, offered = prepare(args.packs, args.comfyui, RequirementsLayer(args.envs))
    try:
        write_for_comfyui(args.out, report, offered)
    except OSError as error:
        log.error("cannot write ComfyUI's list of volume packs into %s: %s", args.out, error)
        return 1
    for name, pack in report.packs.items():
        if pack.refused is not None:
            log.error("'%s' is not loaded: %s", name, pack.refused)
    log.info(
        "%d pack(s) offered to ComfyUI (%s), %d refused, in %.2f s",
        len(offered), ", ".join(offered) or "none", len(report.packs) - len(offered), time.monotonic() - started,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
