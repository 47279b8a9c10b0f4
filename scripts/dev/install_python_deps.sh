#!/usr/bin/env bash
# The local runtime's Python packages: ComfyUI's requirements beside a pinned PyTorch,
# the worker's requirements.txt, and extras of pyproject.toml, into PYTHON's
# environment. (The image installs requirements.lock instead.)
#   scripts/dev/install_python_deps.sh PYTHON COMFYUI_DIR EXTRA [EXTRA ...]
# The first extra pins torch for the platform (`cpu` for the local runtime). ComfyUI's
# own unpinned torch lines are dropped so nothing can replace that pin.
# Used by setup_local.sh.
set -euo pipefail

python_bin=${1:?usage: install_python_deps.sh PYTHON COMFYUI_DIR EXTRA [EXTRA ...]}
comfy_dir=${2:?missing COMFYUI_DIR}
shift 2
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

filtered=$(mktemp)
pins=$(mktemp)
trap 'rm -f "$filtered" "$pins"' EXIT
grep -v -E '^(torch|torchvision|torchaudio)([<>=!~ ].*)?$' "$comfy_dir/requirements.txt" >"$filtered"
"$python_bin" "$repo_root/scripts/pins.py" "$@" >"$pins"
"$python_bin" -m pip install -qq -r "$pins" -r "$filtered" -r "$repo_root/requirements.txt"
