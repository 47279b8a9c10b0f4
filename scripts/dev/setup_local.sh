#!/usr/bin/env bash
# Provision the local runtime used by tests and the local quick start, idempotently:
#   .local/ComfyUI   the pinned ComfyUI tree (ComfyUI/comfyui.lock)
#   .local/venv      Python with CPU-capable PyTorch, ComfyUI's requirements, and this
#                    repository installed editable with its client and dev extras
#   .local/models    a generated random-weight SD1.5-shaped checkpoint (scripts/dev/make_tiny_checkpoint.py)
#   .local/workflows the shipped named workflows on that checkpoint (scripts/dev/make_local_workflows.py)
#   and the worker's own ComfyUI nodes (comfyui_nodes/) linked into .local/ComfyUI/custom_nodes, as the image has them
# Re-running only does what is missing. Override the location with LOCAL_DIR.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
python_bin=${PYTHON:-python3.11}
# shellcheck source=ComfyUI/comfyui.lock
. "$repo_root/ComfyUI/comfyui.lock"

comfy_dir=$local_dir/ComfyUI
venv=$local_dir/venv
log() { printf '[setup_local] %s\n' "$*" >&2; }

mkdir -p "$local_dir"

if [ ! -f "$comfy_dir/.pinned-$COMFYUI_VERSION" ]; then
  PYTHON=$python_bin bash "$repo_root/scripts/image/fetch_comfyui.sh" "$comfy_dir"
  touch "$comfy_dir/.pinned-$COMFYUI_VERSION"
fi

# The venv is brought up to date when any requirement file or the package's metadata changes.
req_stamp=$(cat "$comfy_dir/requirements.txt" "$repo_root/requirements.txt" "$repo_root/pyproject.toml" \
  | sha256sum | cut -c1-16)
if [ ! -f "$venv/.req-$req_stamp" ]; then
  log "installing Python packages into $venv"
  [ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv"
  rm -f "$venv"/.req-*
  bash "$repo_root/scripts/dev/install_python_deps.sh" "$venv/bin/python" "$comfy_dir" cpu client local dev
  # The package itself (dependencies are in place above; setuptools is the venv's own).
  "$venv/bin/python" -m pip install -qq --no-deps --no-build-isolation -e "$repo_root"
  touch "$venv/.req-$req_stamp"
fi

# ComfyUI's bytecode, as the image compiles it at build: every start then skips compiling
# (also where PYTHONDONTWRITEBYTECODE keeps Python from caching it).
if [ ! -f "$comfy_dir/.compiled-$COMFYUI_VERSION" ]; then
  "$venv/bin/python" -m compileall -q -j 0 -x '/(tests|tests-unit|models)/' "$comfy_dir" >/dev/null \
    && touch "$comfy_dir/.compiled-$COMFYUI_VERSION"
fi

PYTHONPATH=$comfy_dir "$venv/bin/python" "$repo_root/scripts/dev/make_tiny_checkpoint.py" --comfyui-dir "$comfy_dir"
"$venv/bin/python" "$repo_root/scripts/dev/make_local_workflows.py" --out "$local_dir/workflows"
for node in "$repo_root"/comfyui_nodes/*/; do
  ln -sfn "${node%/}" "$comfy_dir/custom_nodes/$(basename "$node")"
done
log "ready: ComfyUI at $comfy_dir, Python at $venv/bin/python"
