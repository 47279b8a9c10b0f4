#!/usr/bin/env bash
# Image build step 1: system packages and Python 3.12 in a virtual environment at
# $VIRTUAL_ENV (uv installs the interpreter: Ubuntu 22.04 ships 3.10).
set -euo pipefail

apt-get update
# git: custom nodes; libgl1 + libglib2.0-0: OpenCV, which many custom nodes import;
# libgoogle-perftools4: tcmalloc, preloaded into ComfyUI by start.sh;
# ffmpeg: video custom nodes that call it (PyAV bundles its own libraries).
apt-get install -y --no-install-recommends \
  ca-certificates git libgl1 libglib2.0-0 libgoogle-perftools4 ffmpeg
rm -rf /var/lib/apt/lists/*

# A base that already has this Python (a stand-in base, see scripts/image_test.sh)
# needs no download; the CUDA base has none, so uv installs its own build.
uv python find "${PYTHON_VERSION:?}" >/dev/null 2>&1 || uv python install "$PYTHON_VERSION"
uv venv --seed --python "$PYTHON_VERSION" "${VIRTUAL_ENV:?}"
"$VIRTUAL_ENV/bin/python" --version
