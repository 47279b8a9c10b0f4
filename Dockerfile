# The worker image: CUDA 12.4 (the default flavour; Dockerfile.cuda12.8 is the
# Blackwell-ready one, generated from this file: docs/deploy.md, "Flavours"), Python
# 3.12, the pinned ComfyUI, the models and custom nodes from the manifests in
# ComfyUI/, then the worker. Each real step is a script
# in scripts/image/ that the tests also run. Layers go from slowest- to
# fastest-changing, so a code change rebuilds only the worker's own layers (step 5)
# and never re-downloads models.
#
# Every build argument defaults to what RunPod's builder uses; scripts/image_test.sh
# overrides them with local stand-ins, so the image builds and runs where the registries
# are out of reach (docs/deploy.md: "Build and try the image locally").
#
# Base: NVIDIA's smallest CUDA image, `base`. PyTorch's wheels bring their own CUDA
# runtime, cuBLAS, cuDNN, NCCL... (the nvidia-*-cu12 packages of the lock file); all
# they need from the system is the driver, which the NVIDIA container runtime mounts.
# The `runtime`/`cudnn-runtime` images would add the same libraries a second time (the
# wheels' copies alone are 2.7 GB), unused by torch. A flavour sets the two defaults
# below (scripts/image/flavours.py).
ARG BASE_IMAGE=nvidia/cuda:12.4.1-base-ubuntu22.04
ARG REQUIREMENTS_LOCK=requirements.lock
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHON_VERSION=3.12 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# 1. System packages, Python 3.12 (uv, pinned).
COPY --from=uv /uv /uvx /usr/local/bin/
COPY scripts/image/install_system.sh /worker/scripts/image/
RUN bash /worker/scripts/image/install_system.sh

# 2. ComfyUI at the pinned version, and every Python package of the image from one
#    lock file with hashes (the flavour's torch from PyPI, ComfyUI's requirements, the
#    worker's): scripts/image/lock_requirements.sh writes it.
COPY ComfyUI/comfyui.lock /worker/ComfyUI/
COPY scripts/image/fetch_comfyui.sh /worker/scripts/image/
RUN bash /worker/scripts/image/fetch_comfyui.sh /comfyui
ARG REQUIREMENTS_LOCK
COPY ${REQUIREMENTS_LOCK} /worker/requirements.lock
RUN python -m pip install --require-hashes --no-deps -r /worker/requirements.lock

# 3. Models from the models manifest, verified by sha256. Public models need no token;
#    for gated ones pass --build-arg HF_TOKEN=... (RunPod's builds have no secrets;
#    the value is visible in the image's history, so use a read-only token).
# hadolint ignore=DL3064
ARG HF_TOKEN=""
ARG HF_ENDPOINT=https://huggingface.co
ARG MODELS_MANIFEST=ComfyUI/models.json
COPY ${MODELS_MANIFEST} /worker/ComfyUI/models.json
COPY scripts/image/manifests.py scripts/image/fetch_models.py scripts/image/link_cached_models.py /worker/scripts/image/
RUN HF_TOKEN="$HF_TOKEN" HF_ENDPOINT="$HF_ENDPOINT" HF_XET_HIGH_PERFORMANCE=1 \
    python /worker/scripts/image/fetch_models.py --manifest /worker/ComfyUI/models.json --models-dir /comfyui/models

# 4. Custom nodes from the custom nodes manifest: pinned commits, .git removed,
#    requirements installed, each one loaded once or the build fails with its name.
ARG CUSTOM_NODES_MANIFEST=ComfyUI/custom_nodes.json
COPY ${CUSTOM_NODES_MANIFEST} /worker/ComfyUI/custom_nodes.json
COPY scripts/image/install_custom_nodes.py scripts/image/check_custom_nodes.py /worker/scripts/image/
RUN python /worker/scripts/image/install_custom_nodes.py --lock /worker/ComfyUI/custom_nodes.json --comfyui /comfyui

# 5. The worker alone: its entry point and its package, run from /worker (start.sh
#    starts it there); its dependencies are in requirements.lock, installed above. The
#    local endpoint, the client and the development tools stay out of the image.
COPY rp_handler.py /worker/
COPY comfy_worker /worker/comfy_worker
COPY start.sh test_input.json /worker/
COPY ComfyUI/extra_model_paths.yaml ComfyUI/launch.args /worker/ComfyUI/
# The worker's own node: SaveImage with its PNG encoding off ComfyUI's prompt thread.
COPY comfyui_nodes/worker_save_image /comfyui/custom_nodes/worker_save_image
RUN PYTHONPATH=/comfyui python /worker/scripts/image/check_custom_nodes.py --comfyui /comfyui worker_save_image

# 6. Proof of this ComfyUI, on the CPU (~15 s): the worker drives it through its own
#    code (nodes learned, a job on a generated checkpoint with progress and outputs, a
#    cancel, history deleted, a UI-format workflow) and the named workflows (README:
#    "Named workflows") find every node and baked model they name. A ComfyUI upgrade the
#    worker cannot drive, or a workflow the image cannot run, fails the build naming what
#    broke, so a bad image never reaches RunPod. The node list it reads is kept for the
#    worker (NODES_SNAPSHOT), so a fresh container's worker is ready the moment ComfyUI
#    answers. The worker is not an installed package: the check imports it from /worker.
ARG WORKFLOWS_DIR=ComfyUI/workflows
COPY ${WORKFLOWS_DIR} /worker/ComfyUI/workflows
COPY scripts/dev/make_tiny_checkpoint.py /worker/scripts/dev/
COPY scripts/image/check_comfyui.py scripts/image/comfyui_contract.py scripts/image/check_workflows.py /worker/scripts/image/
RUN python /worker/scripts/image/check_comfyui.py --comfyui /comfyui \
      --workflows /worker/ComfyUI/workflows --launch-args /worker/ComfyUI/launch.args \
      --save-snapshot /comfyui/worker-object-info.json

# 7. Bytecode for every module of ComfyUI, its custom nodes and the worker, so a fresh
#    container compiles nothing at start (pip compiled site-packages when it installed them).
RUN python -m compileall -q -j 0 /comfyui /worker || echo "some files did not compile (above); Python compiles them if they are ever imported"

# 8. The files ComfyUI's boot opens, in order, which start.sh reads ahead so a cold host's
#    first boot finds them in memory (comfy_worker/models/boot_readahead.py): one boot with
#    the worker's launch flags, on the CPU, ended before it listens.
RUN PYTHONPATH=/worker python -m comfy_worker.models.boot_readahead record --comfyui /comfyui \
      --out /comfyui/boot-files.txt --launch-args /worker/ComfyUI/launch.args -- --cpu --disable-api-nodes

WORKDIR /worker
CMD ["/worker/start.sh"]
