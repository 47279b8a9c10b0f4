"""A folder standing in for a network volume with custom node packs, for the tests that start
the worker on one (tests/image/test_volume_packs.py through start.sh, tests/container in the
image): a small real node pack (comfyui-tooling-nodes, unpacked from its wheel), one the
volume's custom_nodes.json pins by commit whose requirements.txt needs a package the image
lacks (inflection), one that fails to import and one whose requirement conflicts with an
image pin. pip is to see no index, only `WHEELS` (scripts/dev/setup_test_tools.sh fetches
them: tests/support/volume_pack_wheels.txt)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

from tests.support.comfyui_server import LOCAL_DIR, PYTHON, comfyui_tree, free_port
from tests.support.tools import GIT_IDENTITY, missing
from tests.support.workflows import png_base64

WHEELS = LOCAL_DIR / "test-wheels"
TOOLING_WHEEL = "comfyui_tooling_nodes-0.1.0-py2.py3-none-any.whl"

TITLEIZE_PACK = """
import inflection  # not in the image: the volume's requirements layer brings it


class Titleize:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hello volume"})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self, text):
        return {"ui": {"text": [inflection.titleize(text)]}}


NODE_CLASS_MAPPINGS = {"VolumeTitleize": Titleize}
"""
HARMLESS_PACK = """
class Nothing:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    def run(self):
        return ()

NODE_CLASS_MAPPINGS = {"ConflictingNothing": Nothing}
"""


def git_repo(folder: Path, files: dict[str, str]) -> tuple[str, str]:
    """A git repository in `folder` holding `files`: (its file:// URL, its commit)."""
    folder.mkdir(parents=True)
    for relative, text in files.items():
        (folder / relative).write_text(text)
    env = {"PATH": "/usr/bin:/bin", **GIT_IDENTITY}
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "pack"]):
        subprocess.run(["git", "-C", str(folder), *command], check=True, env=env, capture_output=True)
    head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return f"file://{folder}", head.stdout.strip()


def stand_in_volume(tmp_path: Path) -> tuple[Path, str]:
    """A volume folder with the four packs; returns it and the pinned pack's commit (its
    repository is under `tmp_path`/sources)."""
    if not (WHEELS / TOOLING_WHEEL).exists():
        missing(f"{WHEELS / TOOLING_WHEEL} (scripts/dev/setup_test_tools.sh fetches it)")
    volume = tmp_path / "volume"
    packs = volume / "ComfyUI" / "custom_nodes"
    packs.mkdir(parents=True)
    with zipfile.ZipFile(WHEELS / TOOLING_WHEEL) as wheel:
        for name in wheel.namelist():
            if name.startswith("comfyui_tooling_nodes/"):
                target = packs / "comfyui-tooling-nodes" / name.removeprefix("comfyui_tooling_nodes/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(wheel.read(name))
    (packs / "broken-pack").mkdir()
    (packs / "broken-pack" / "__init__.py").write_text("import module_that_does_not_exist\n")
    (packs / "conflicting-pack").mkdir()
    (packs / "conflicting-pack" / "__init__.py").write_text(HARMLESS_PACK)
    (packs / "conflicting-pack" / "requirements.txt").write_text("aiohttp<3\n")
    files = {"__init__.py": TITLEIZE_PACK, "requirements.txt": "inflection==0.5.1\n"}
    repo, commit = git_repo(tmp_path / "sources" / "titleize-pack", files)
    manifest = {"custom_nodes": [{"name": "titleize-pack", "repo": repo, "commit": commit}]}
    (volume / "ComfyUI" / "custom_nodes.json").write_text(json.dumps(manifest))
    return volume, commit


def tooling_job(color: tuple[int, int, int]) -> dict:
    return {
        "workflow": {
            "1": {"class_type": "ETN_LoadImageBase64", "inputs": {"image": png_base64(color)}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "volume"}},
            "3": {"class_type": "VolumeTitleize", "inputs": {"text": "packs from the volume"}},
        }
    }


def start_sh_env(work: Path, volume: Path, run: str, snapshot: Path) -> dict[str, str]:
    """start.sh's settings for a run on the pinned ComfyUI (CPU, a tree of its own and a free
    port) with `volume` as the network volume, pip offered only `WHEELS`, its temporary files
    in `work`/tmp-`run` and the node snapshot kept at `snapshot`."""
    base = comfyui_tree(work / f"comfyui-{run}")
    (work / f"tmp-{run}").mkdir()
    return {
        "TMPDIR": str(work / f"tmp-{run}"),
        "COMFYUI_PATH": str(base),
        "COMFY_HOST": f"127.0.0.1:{free_port()}",
        "COMFY_PID_FILE": str(work / f"comfyui-{run}.pid"),
        "PYTHON": str(PYTHON),
        "COMFY_EXTRA_ARGS": f"--cpu --base-directory {base}",
        "VOLUME_MODELS_DIR": str(volume / "models"),
        "NODES_SNAPSHOT": str(snapshot),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(WHEELS),
        "PREFETCH": "off",
    }
