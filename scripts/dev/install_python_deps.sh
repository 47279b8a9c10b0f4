#!/usr/bin/env bash
# The local runtime's Python packages: ComfyUI's requirements beside a pinned PyTorch,
# into PYTHON's environment. (The image installs requirements.lock instead.)
#   scripts/dev/install_python_deps.sh PYTHON COMFYUI_DIR TORCH_REQUIREMENTS [MORE_REQUIREMENTS ...]
# TORCH_REQUIREMENTS pins torch for the platform (requirements-local.txt: CPU).
# ComfyUI's own unpinned torch lines are dropped so nothing can replace that pin.
# Used by setup_local.sh.
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
