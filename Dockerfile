# The worker image: CUDA 12.4 runtime, Python 3.12, the pinned ComfyUI, the models and
# custom nodes from the manifests in ComfyUI/, then the worker. Each real step is a
# script in scripts/image/ that the tests also run. Layers go from slowest- to
# fastest-changing, so a code change rebuilds only the worker's own layers (step 5)
# and never re-downloads models.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

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
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /usr/local/bin/
COPY scripts/image/install_system.sh /worker/scripts/image/
RUN bash /worker/scripts/image/install_system.sh

# 2. ComfyUI at the pinned version, with PyTorch for CUDA 12.4.
COPY ComfyUI/comfyui.lock /worker/ComfyUI/
COPY requirements-cuda.txt /worker/
COPY scripts/image/fetch_comfyui.sh scripts/image/install_python_deps.sh /worker/scripts/image/
RUN bash /worker/scripts/image/fetch_comfyui.sh /comfyui \
 && bash /worker/scripts/image/install_python_deps.sh python /comfyui /worker/requirements-cuda.txt

# 3. Models from ComfyUI/models.json, verified by sha256. Public models need no token;
#    for gated ones pass --build-arg HF_TOKEN=... (RunPod's builds have no secrets;
#    the value is visible in the image's history, so use a read-only token).
# hadolint ignore=DL3064
ARG HF_TOKEN=""
COPY ComfyUI/models.json /worker/ComfyUI/
COPY scripts/image/manifests.py scripts/image/fetch_models.py /worker/scripts/image/
RUN HF_TOKEN="$HF_TOKEN" HF_XET_HIGH_PERFORMANCE=1 \
    python /worker/scripts/image/fetch_models.py --manifest /worker/ComfyUI/models.json --models-dir /comfyui/models

# 4. Custom nodes from ComfyUI/custom_nodes.json: pinned commits, .git removed,
#    requirements installed, each one loaded once or the build fails with its name.
COPY ComfyUI/custom_nodes.json /worker/ComfyUI/
COPY scripts/image/install_custom_nodes.py scripts/image/check_custom_nodes.py /worker/scripts/image/
RUN python /worker/scripts/image/install_custom_nodes.py --lock /worker/ComfyUI/custom_nodes.json --comfyui /comfyui

# 5. The worker's pinned dependencies, then its code, installed as a package
#    (pyproject.toml; --no-deps: the dependencies are the pinned ones above).
COPY requirements.txt /worker/
RUN python -m pip install -r /worker/requirements.txt
COPY pyproject.toml requirements-client.txt requirements-dev.txt /worker/
COPY rp_handler.py /worker/
COPY comfy_worker /worker/comfy_worker
COPY local_endpoint /worker/local_endpoint
COPY client /worker/client
RUN python -m pip install --no-deps /worker
COPY start.sh test_input.json /worker/
COPY ComfyUI/extra_model_paths.yaml ComfyUI/launch.args /worker/ComfyUI/

WORKDIR /worker
CMD ["/worker/start.sh"]
