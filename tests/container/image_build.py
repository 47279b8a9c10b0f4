"""Build the real Dockerfiles locally, every flavour (scripts/image/flavours.py), with
local stand-ins for the registries they use, then run the container tests against each
image (scripts/image_test.sh runs this): all of them against the default flavour, those
marked `every_flavour` (a job in a container, what must be true inside) against the others.
The flavours share their first layers and the build cache; only the torch stack and the
layers after it are built again.

Stand-ins, each behind a build argument whose default is the real thing:
- BASE_IMAGE: a Debian bookworm root file system (debootstrap) with the building
  machine's CA bundle and its CPython 3.12 (at the same absolute path, where it runs),
  in place of each flavour's nvidia/cuda base (the wheels bring CUDA's libraries);
- UV_IMAGE: the uv binary of PyPI's uv wheel at the pinned version, in place of
  ghcr.io/astral-sh/uv;
- HF_ENDPOINT and MODELS_MANIFEST: a Hugging Face-compatible server on 127.0.0.1
  carrying the generated tiny checkpoint, and a manifest naming it with its sha256;
- CUSTOM_NODES_MANIFEST: a manifest naming a git repository served on 127.0.0.1,
  holding a small custom node of the tests' own that declares a pip requirement;
- WORKFLOWS_DIR: the shipped named workflows, staged to name the stand-in checkpoint
  (tests/support/shipped_workflows.py), so the build's proof of them passes.
Everything else is the real build: the same Dockerfiles, scripts and lock files.

    python -m tests.container.image_build [PYTEST ARGS]
    IMAGE_TEST_FLAVOURS=cuda12.4 python -m tests.container.image_build   # one flavour
    IMAGE_TEST_KEEP_IMAGE=1 ...   # keep the images afterwards, to try things in them
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from benchmarks import boot
from scripts.image.flavours import DEFAULT, FLAVOURS, Flavour
from tests.container.conftest import tiny_job
from tests.support.fake_hub import fake_hub
from tests.support.servers import http_file_server
from tests.support.shipped_workflows import stage_workflows

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = Path(os.environ.get("LOCAL_DIR", REPO_ROOT / ".local"))
WORK_DIR = Path(os.environ.get("IMAGE_TEST_DIR", "/var/tmp/comfy-worker-image-test"))  # caches runs share
# Each run its own tag, staging folder, report and prune label: two image tests on one
# machine (two checkouts, or CI beside a developer) never take each other's image.
RUN = os.environ.get("IMAGE_TEST_RUN") or str(os.getpid())
RUN_DIR = WORK_DIR / "runs" / RUN
STAGING = REPO_ROOT / ".image-test" / RUN  # inside the build context, git- and docker-ignored but for the manifests
STAGED = f".image-test/{RUN}"  # STAGING, as the build context names it
IMAGE = f"comfy-worker:image-test-{RUN}"  # the default flavour's; another's adds its name
RUN_LABEL = f"comfy-worker.image-test={RUN}"
UV_VERSION = "0.13.9"
BASE_TAG = "comfy-worker-standin/base:bookworm-py3.12"
ROOTFS_TAG = "comfy-worker-standin/rootfs:bookworm-py3.12"
# Shared libraries this machine's CPython 3.12 links (its sqlite3, ssl, ctypes... modules).
PYTHON_LIBRARIES = (
    "libsqlite3-0 libssl3 libffi8 libbz2-1.0 liblzma5 zlib1g libreadline8 libncursesw6 libexpat1 libtirpc3 "
    "libuuid1 libgdbm6"
)
UV_TAG = f"comfy-worker-standin/uv:{UV_VERSION}"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Its own path: the build's `apt-get install ca-certificates` rewrites Debian's bundle.
CA_BUNDLE = "/etc/ssl/standin/ca-bundle.crt"
TINY_CHECKPOINT = LOCAL_DIR / "ComfyUI" / "models" / "checkpoints" / "tiny-random-sd15-noise.safetensors"
NODE_REQUIREMENT = "humanize==4.17.0"  # small, pure Python, not otherwise in the image


def log(message: str) -> None:
    print(f"[image_build] {message}", flush=True)  # noqa: T201 - a command-line report


def run(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, **kwargs)


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def python312() -> Path:
    found = sorted(glob.glob("/root/.pyenv/versions/3.12.*/bin/python3.12"))
    if not found:
        raise SystemExit("this machine's CPython 3.12 (pyenv) is missing: the stand-in base needs it")
    return Path(found[-1]).parents[1]


def build_standin_base() -> None:
    with open(WORK_DIR / "standin.lock", "w") as lock:  # the rootfs is shared: one run builds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image_exists(BASE_TAG):
            build_standin_base_locked()


def build_standin_base_locked() -> None:
    python_root = python312()
    rootfs = WORK_DIR / "rootfs"
    if not (rootfs / "usr" / "bin" / "apt-get").exists():
        log("debootstrap bookworm (minbase) for the stand-in base")
        shutil.rmtree(rootfs, ignore_errors=True)
        run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian")
    target = rootfs / str(python_root).lstrip("/")
    if not target.exists():
        shutil.copytree(python_root, target, symlinks=True)
    (rootfs / CA_BUNDLE.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(HOST_CA_BUNDLE, rootfs / CA_BUNDLE.lstrip("/"))
    changes = [
        f"ENV PATH={python_root}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"ENV SSL_CERT_FILE={CA_BUNDLE}",
        f"ENV PIP_CERT={CA_BUNDLE}",
        f"ENV REQUESTS_CA_BUNDLE={CA_BUNDLE}",
        "ENV UV_NATIVE_TLS=true",
    ]
    log(f"importing {ROOTFS_TAG}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    args = ["docker", "import", *(arg for change in changes for arg in ("--change", change)), "-", ROOTFS_TAG]
    run(*args, stdin=tar.stdout)
    tar.wait()
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(
            f"FROM {ROOTFS_TAG}\n"
            f"RUN apt-get update && apt-get install -y --no-install-recommends {PYTHON_LIBRARIES} "
            "&& rm -rf /var/lib/apt/lists/*\n"
        )
        log(f"building {BASE_TAG}")
        run("docker", "build", "-q", "--network", "host", "-t", BASE_TAG, context)


def build_standin_uv() -> None:
    if image_exists(UV_TAG):
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            tmp,
            f"uv=={UV_VERSION}",
            "--platform",
            "manylinux_2_17_x86_64",
        )
        [wheel] = Path(tmp).glob("uv-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(("/scripts/uv", "/scripts/uvx")):
                    target = Path(tmp) / Path(name).name
                    target.write_bytes(archive.read(name))
                    target.chmod(0o755)
        (Path(tmp) / "Dockerfile").write_text("FROM scratch\nCOPY uv uvx /\n")
        log(f"building {UV_TAG}")
        run("docker", "build", "-q", "-t", UV_TAG, tmp)


def test_node_repository(root: Path) -> Path:
    """A git repository holding the tests' custom node, served as a 'dumb' HTTP remote."""
    work = root / "image_test_node"
    work.mkdir(parents=True)
    (work / "requirements.txt").write_text(NODE_REQUIREMENT + "\n")
    (work / "__init__.py").write_text(
        '"""A custom node of the image test: proves its requirement is importable by ComfyUI\'s Python."""\n'
        "import humanize\n\n\n"
        "class ImageTestNode:\n"
        "    RETURN_TYPES = ('STRING',)\n"
        "    FUNCTION = 'describe'\n"
        "    CATEGORY = 'testing'\n\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        "        return {'required': {'size': ('INT', {'default': 1024})}}\n\n"
        "    def describe(self, size):\n"
        "        return (humanize.naturalsize(size),)\n\n\n"
        "NODE_CLASS_MAPPINGS = {'ImageTestNode': ImageTestNode}\n"
    )
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    run("git", "init", "-q", str(work))
    run(*git, "add", ".")
    run(*git, "commit", "-qm", "image test node")
    bare = root / "served" / "image_test_node.git"
    run("git", "clone", "-q", "--bare", str(work), str(bare))
    run("git", "-C", str(bare), "update-server-info")
    return bare


def image_tag(flavour: Flavour) -> str:
    return IMAGE if flavour is DEFAULT else f"{IMAGE}-{flavour.name}"


def flavours_to_build() -> list[Flavour]:
    names = os.environ.get("IMAGE_TEST_FLAVOURS")
    return [f for f in FLAVOURS if not names or f.name in names.split(",")]


def docker_build(build_args: dict[str, str], flavour: Flavour = DEFAULT) -> float:
    tag = image_tag(flavour)
    args = ["docker", "build", "--network", "host", "-f", str(REPO_ROOT / flavour.dockerfile), "-t", tag]
    args += ["--label", RUN_LABEL, "--force-rm"]  # a failed step leaves no container holding its layers
    for name, value in build_args.items():
        args += ["--build-arg", f"{name}={value}"]
    started = time.monotonic()
    run(*args, str(REPO_ROOT))
    return time.monotonic() - started


def image_report(image: str, build_s: float, rebuild_s: float | None) -> str:
    size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", image], check=True, capture_output=True, text=True
        ).stdout
    )
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    layers = sorted((line.split("\t", 1) for line in history), key=lambda row: -parse_size(row[0]))[:6]
    lines = [
        f"image {image}: {size / 1e9:.2f} GB",
        f"build: {build_s:.0f} s (with whatever layers this machine had cached; none on a fresh machine)",
    ]
    if rebuild_s is not None:
        lines.append(f"rebuild after a code change: {rebuild_s:.0f} s")
    lines.append("largest layers:")
    lines += [f"  {row[0]:>8}  {row[1].replace('|', ' ')[:110]}" for row in layers]
    return "\n".join(lines)


def parse_size(text: str) -> float:
    units = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return 0.0


def main() -> int:
    pytest_args = sys.argv[1:]  # all of them go to pytest (tests/container), e.g. -q or -k hub
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    build_standin_base()
    build_standin_uv()
    checkpoint = TINY_CHECKPOINT.read_bytes()
    shutil.rmtree(STAGING, ignore_errors=True)
    STAGING.mkdir(parents=True)
    try:
        return build_and_test(pytest_args, checkpoint)
    finally:
        shutil.rmtree(STAGING, ignore_errors=True)
        # This run's images go (their layers stay in the build cache, so the next run is quick).
        for flavour in FLAVOURS if not os.environ.get("IMAGE_TEST_KEEP_IMAGE") else ():
            run("docker", "image", "rm", "-f", image_tag(flavour), stdout=subprocess.DEVNULL, check=False)
        # Stopped containers of this run's images (a build step that failed) hold their layers.
        run(
            "docker",
            "container",
            "prune",
            "-f",
            "--filter",
            f"label={RUN_LABEL}",
            stdout=subprocess.DEVNULL,
            check=False,
        )
        run("docker", "image", "prune", "-f", "--filter", f"label={RUN_LABEL}", stdout=subprocess.DEVNULL, check=False)


def build_and_test(pytest_args: list[str], checkpoint: bytes) -> int:
    stage_workflows(STAGING / "workflows", TINY_CHECKPOINT.name)  # the shipped ones, on the stand-in checkpoint
    with tempfile.TemporaryDirectory() as tmp, fake_hub({"local/tiny-sd15/tiny.safetensors": checkpoint}) as hub:
        bare = test_node_repository(Path(tmp))
        (STAGING / "models.json").write_text(
            json.dumps(
                {
                    "models": [
                        {
                            "repo_id": "local/tiny-sd15",
                            "file": "tiny.safetensors",
                            "revision": "main",
                            "sha256": hashlib.sha256(checkpoint).hexdigest(),
                            "folder": "checkpoints",
                            "name": TINY_CHECKPOINT.name,
                        }
                    ]
                }
            )
        )
        with http_file_server(bare.parent) as git_server:
            commit = subprocess.run(
                ["git", "-C", str(bare), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
            ).stdout.strip()
            (STAGING / "custom_nodes.json").write_text(
                json.dumps(
                    {
                        "custom_nodes": [
                            {"name": "image_test_node", "repo": f"{git_server}/image_test_node.git", "commit": commit}
                        ]
                    }
                )
            )
            build_args = {
                "BASE_IMAGE": BASE_TAG,
                "UV_IMAGE": UV_TAG,
                "HF_ENDPOINT": hub,
                "MODELS_MANIFEST": f"{STAGED}/models.json",
                "CUSTOM_NODES_MANIFEST": f"{STAGED}/custom_nodes.json",
                "WORKFLOWS_DIR": f"{STAGED}/workflows",
            }
            reports = []
            for flavour in flavours_to_build():
                log(f"building {flavour.dockerfile} ({flavour.name}) with the stand-ins")
                build_s = docker_build(build_args, flavour)
                rebuild_s = None
                if flavour is DEFAULT:
                    marker = REPO_ROOT / "comfy_worker" / "_image_test_rebuild.py"
                    marker.write_text(
                        '"""Written and removed by tests/container/image_build.py to time a rebuild."""\n'
                    )
                    try:
                        rebuild_s = docker_build(build_args)
                    finally:
                        marker.unlink()
                        docker_build(build_args)  # the image tested is the tree as it is (cached: seconds)
                reports.append(image_report(image_tag(flavour), build_s, rebuild_s))
    # Each run's stand-in ports change the model and custom-node layers: drop this
    # script's earlier, now untagged images, so repeated runs do not fill the disk
    # (RunPod's SDK refuses to start a worker with under 10% of the disk free).
    run("docker", "image", "prune", "-f", "--filter", f"label={RUN_LABEL}", stdout=subprocess.DEVNULL)
    report = "\n\n".join(reports)
    if any(f is DEFAULT for f in flavours_to_build()):
        log("a fresh container's first start: start.sh and a first job against a plain main.py --cpu")
        report += "\n\n" + boot.image_section(boot.measure_image(IMAGE, tiny_job(seed=5, size=16)))
    log("\n" + report)
    (RUN_DIR / "image-report.txt").write_text(report + "\n")
    failed = 0
    for flavour in flavours_to_build():
        env = {**os.environ, "COMFY_WORKER_IMAGE": image_tag(flavour), "COMFY_WORKER_FLAVOUR": flavour.name}
        selection = [] if flavour is DEFAULT else ["-m", "every_flavour"]
        log(f"container tests on {image_tag(flavour)}")
        command = [sys.executable, "-m", "pytest", "tests/container", *selection, *pytest_args]
        failed = failed or subprocess.run(command, cwd=REPO_ROOT, env=env).returncode
    return failed


if __name__ == "__main__":
    sys.exit(main())
