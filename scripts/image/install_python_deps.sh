#!/usr/bin/env bash
# Install ComfyUI's Python requirements beside a pinned PyTorch, into PYTHON's environment.
#   scripts/image/install_python_deps.sh PYTHON COMFYUI_DIR TORCH_REQUIREMENTS [MORE_REQUIREMENTS ...]
# TORCH_REQUIREMENTS pins torch for the platform: requirements-cuda.txt (the image,
# CUDA 12.4) or requirements-local.txt (CPU). ComfyUI's own unpinned torch lines are
# dropped so nothing can replace that pin. Used by the Dockerfile and setup_local.sh.
set -euo pipefail

python_bin=${1:?usage: install_python_deps.sh PYTHON COMFYUI_DIR TORCH_REQUIREMENTS [MORE ...]}
comfy_dir=${2:?missing COMFYUI_DIR}
torch_requirements=${3:?missing TORCH_REQUIREMENTS}
shift 3

filtered=$(mktemp)
trap 'rm -f "$filtered"' EXIT
grep -v -E '^(torch|torchvision|torchaudio)([<>=!~ ].*)?$' "$comfy_dir/requirements.txt" >"$filtered"
extra=()
for requirements in "$@"; do extra+=(-r "$requirements"); done
"$python_bin" -m pip install -qq -r "$torch_requirements" -r "$filtered" "${extra[@]}"
