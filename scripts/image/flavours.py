"""The image's flavours, defined once: which CUDA, which torch, which lock file, which
Dockerfile, which GPUs. Everything else about a flavour is derived from this table.

    python scripts/image/flavours.py write      # regenerate the flavours' Dockerfiles and hub.json's pools
    python scripts/image/flavours.py check      # fail if any of them differs from what `write` makes
    python scripts/image/flavours.py lock NAME  # a flavour's pyproject extra and lock file
    python scripts/image/flavours.py table      # docs/deploy.md's flavour table

`Dockerfile` is the source of every flavour's steps: another flavour's Dockerfile is a
copy of it with its own defaults for BASE_IMAGE and REQUIREMENTS_LOCK, because RunPod's
GitHub integration picks a Dockerfile path but cannot set build arguments. Standard
library only.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Flavour:
    name: str
    dockerfile: str  # its path in the repository: what a RunPod endpoint's "Dockerfile Path" names
    base_image: str  # nvidia/cuda `base`: the wheels bring every CUDA library, the host brings the driver
    torch_extra: str  # pyproject.toml's extra holding its torch stack
    lock: str  # the hashed lock file its image installs
    cuda: str  # torch.version.cuda in the image
    architectures: tuple[str, ...]  # what its torch must be compiled for (a container test reads them)
    gpus: str  # for people: which cards it is for
    pools: tuple[str, ...]  # RunPod's serverless GPU pools it runs on
    min_driver: str  # the NVIDIA driver its CUDA needs
    allowed_cuda_versions: tuple[str, ...]  # RunPod's host filter: drivers that run it


DEFAULT = Flavour(
    name="cuda12.4",
    dockerfile="Dockerfile",
    base_image="nvidia/cuda:12.4.1-base-ubuntu22.04",
    torch_extra="cuda",
    lock="requirements.lock",
    cuda="12.4",
    architectures=("sm_80", "sm_86", "sm_90"),
    gpus="Ampere, Ada, Hopper: A40, A100, RTX 3090/4090, L4, L40S, RTX 6000 Ada, H100, H200",
    pools=("AMPERE_24", "ADA_24", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "ADA_80_PRO", "HOPPER_141"),
    min_driver="550",
    allowed_cuda_versions=("12.4", "12.5", "12.6", "12.7", "12.8", "12.9"),
)
BLACKWELL = Flavour(
    name="cuda12.8",
    dockerfile="Dockerfile.cuda12.8",
    base_image="nvidia/cuda:12.8.1-base-ubuntu22.04",
    torch_extra="cuda128",
    lock="requirements-cuda12.8.lock",
    cuda="12.8",
    architectures=("sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
    gpus="Blackwell (RTX 5090, RTX PRO 6000, B200) and every card of the CUDA 12.4 flavour",
    pools=(
        "ADA_32_PRO",
        "BLACKWELL_96",
        "BLACKWELL_180",
        "AMPERE_24",
        "ADA_24",
        "AMPERE_48",
        "ADA_48_PRO",
        "AMPERE_80",
        "ADA_80_PRO",
        "HOPPER_141",
    ),
    min_driver="570",
    allowed_cuda_versions=("12.8", "12.9"),
)
FLAVOURS = (DEFAULT, BLACKWELL)
# The flavour RunPod's Hub builds (it takes the repository's root Dockerfile); hub.json
# offers its pools.
HUB_FLAVOUR = DEFAULT
HUB_JSON = REPO_ROOT / ".runpod" / "hub.json"


def by_name(name: str) -> Flavour:
    for flavour in FLAVOURS:
        if flavour.name == name:
            return flavour
    raise SystemExit(f"no flavour {name!r}; the flavours are {', '.join(f.name for f in FLAVOURS)}")


def dockerfile_text(flavour: Flavour) -> str:
    """The flavour's Dockerfile: the default one with this flavour's argument defaults."""
    source = (REPO_ROOT / DEFAULT.dockerfile).read_text()
    if flavour is DEFAULT:
        return source
    replacements = {"BASE_IMAGE": flavour.base_image, "REQUIREMENTS_LOCK": flavour.lock}
    for argument, value in replacements.items():
        source, count = re.subn(rf"^ARG {argument}=.*$", f"ARG {argument}={value}", source, flags=re.MULTILINE)
        if count != 1:
            raise SystemExit(f"{DEFAULT.dockerfile} must declare `ARG {argument}=...` exactly once (found {count})")
    header = (
        f"# The {flavour.name} flavour ({flavour.gpus}): torch built for CUDA {flavour.cuda},\n"
        f"# NVIDIA driver {flavour.min_driver} or newer. GENERATED from {DEFAULT.dockerfile} by\n"
        "# scripts/image/flavours.py: edit Dockerfile, then run `python scripts/image/flavours.py write`.\n"
    )
    return header + source


def hub_json_text() -> str:
    hub = json.loads(HUB_JSON.read_text())
    hub["config"]["gpuIds"] = ",".join(HUB_FLAVOUR.pools)
    hub["config"]["allowedCudaVersions"] = list(HUB_FLAVOUR.allowed_cuda_versions)
    return json.dumps(hub, indent=2) + "\n"


def generated() -> dict[Path, str]:
    files = {REPO_ROOT / f.dockerfile: dockerfile_text(f) for f in FLAVOURS if f is not DEFAULT}
    files[HUB_JSON] = hub_json_text()
    return files


def table() -> str:
    rows = [
        "| Flavour | Dockerfile path | For | torch's CUDA | Driver | RunPod pools | Allowed CUDA versions |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in FLAVOURS:
        rows.append(
            f"| {f.name}{' (default)' if f is DEFAULT else ''} | `{f.dockerfile}` | {f.gpus} | {f.cuda} "
            f"| >= {f.min_driver} | {', '.join(f.pools)} | {', '.join(f.allowed_cuda_versions)} |"
        )
    return "\n".join(rows)


def main(args: list[str]) -> int:
    if args == ["write"]:
        for path, text in generated().items():
            path.write_text(text)
        return 0
    if args == ["check"]:
        stale = [str(path.relative_to(REPO_ROOT)) for path, text in generated().items() if path.read_text() != text]
        if stale:
            sys.stderr.write(f"out of date: {', '.join(stale)}; run `python scripts/image/flavours.py write`\n")
            return 1
        return 0
    if len(args) == 2 and args[0] == "lock":
        flavour = by_name(args[1])
        sys.stdout.write(f"{flavour.torch_extra} {flavour.lock}\n")
        return 0
    if args == ["table"]:
        sys.stdout.write(table() + "\n")
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
