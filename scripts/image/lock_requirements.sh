#!/usr/bin/env bash
# Write requirements.lock: every Python package of the image (ComfyUI's requirements,
# the CUDA 12.4 torch stack of pyproject.toml's `cuda` extra, the worker's requirements.txt),
# pinned with hashes for Linux x86_64 and the image's Python (3.12). The Dockerfile
# installs exactly this file (pip --require-hashes --no-deps). Run it after changing
# any of those inputs or ComfyUI/comfyui.lock:
#   bash scripts/image/lock_requirements.sh
# It uses the pinned ComfyUI tree and uv of the local runtime (scripts/dev/setup_local.sh).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
cd "$repo_root"
bash scripts/dev/setup_local.sh
# shellcheck source=ComfyUI/comfyui.lock
. ComfyUI/comfyui.lock
cp "$local_dir/ComfyUI/requirements.txt" "$local_dir/comfyui-$COMFYUI_VERSION-requirements.txt"
python3 scripts/pins.py cuda >"$local_dir/pyproject-cuda-requirements.txt"
python3 scripts/pins.py --lock-excludes >"$local_dir/lock-excludes.txt"
"$local_dir/venv/bin/uv" pip compile --quiet --native-tls \
  --python-version 3.12 --python-platform x86_64-manylinux_2_28 --generate-hashes \
  --custom-compile-command "bash scripts/image/lock_requirements.sh" \
  --excludes "$local_dir/lock-excludes.txt" \
  "$local_dir/pyproject-cuda-requirements.txt" "$local_dir/comfyui-$COMFYUI_VERSION-requirements.txt" requirements.txt \
  -o requirements.lock
# Paths of the local runtime say nothing to a reader: name the inputs by what they are.
sed -i -E -e 's#-r [^ ]*comfyui-(v[^ ]*)-requirements\.txt#-r ComfyUI \1 requirements.txt#' \
  -e 's#-r [^ ]*pyproject-cuda-requirements\.txt#pyproject.toml [cuda]#' requirements.lock
echo "wrote requirements.lock ($(grep -c '^[a-z]' requirements.lock) packages)"
