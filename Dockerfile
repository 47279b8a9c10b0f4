# The worker image: CUDA 12.4 runtime, Python 3.12, the pinned ComfyUI, the models and
# custom nodes from the manifests in ComfyUI/, then the worker. Each real step is a
# script in scripts/ that the tests also run. Layers go from slowest- to
# fastest-changing, so a code change rebuilds only the last two and never
# re-downloads models.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHON_VERSION=3.12 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    COMFYUI_PATH=/comfyui

# 1. System packages, Python 3.12 (uv, pinned).
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /usr/local/bin/
COPY scripts/image/install_system.sh /worker/scripts/image/
RUN bash /worker/scripts/image/install_system.sh

# 2. ComfyUI at the pinned version, with PyTorch for CUDA 12.4.
COPY ComfyUI/comfyui.lock /worker/ComfyUI/
COPY requirements-cuda.txt /worker/
COPY scripts/fetch_comfyui.sh scripts/install_python_deps.sh /worker/scripts/
RUN bash /worker/scripts/fetch_comfyui.sh /comfyui \
 && bash /worker/scripts/install_python_deps.sh python /comfyui /worker/requirements-cuda.txt

# 3. Models from ComfyUI/models.json, verified by sha256. Public models need no token;
#    for gated ones pass --build-arg HF_TOKEN=... (RunPod's builds have no secrets;
#    the value is visible in the image's history, so use a read-only token).
# hadolint ignore=DL3064
ARG HF_TOKEN=""
COPY ComfyUI/models.json /worker/ComfyUI/
COPY scripts/manifests.py scripts/fetch_models.py /worker/scripts/
RUN HF_TOKEN="$HF_TOKEN" HF_XET_HIGH_PERFORMANCE=1 \
    python /worker/scripts/fetch_models.py --manifest /worker/ComfyUI/models.json --models-dir /comfyui/models

# 4. Custom nodes from ComfyUI/custom_nodes.json: pinned commits, .git removed,
#    requirements installed, each one loaded once or the build fails with its name.
COPY ComfyUI/custom_nodes.json /worker/ComfyUI/
COPY scripts/install_custom_nodes.py scripts/check_custom_nodes.py /worker/scripts/
RUN python /worker/scripts/install_custom_nodes.py --lock /worker/ComfyUI/custom_nodes.json --comfyui /comfyui

# 5. The worker's own dependencies, then its code.
COPY requirements.txt /worker/
RUN python -m pip install -r /worker/requirements.txt
COPY start.sh rp_handler.py test_input.json /worker/
COPY comfy_worker /worker/comfy_worker
COPY ComfyUI/extra_model_paths.yaml /worker/ComfyUI/
COPY scripts/warmup.py /worker/scripts/

WORKDIR /worker
CMD ["/worker/start.sh"]
