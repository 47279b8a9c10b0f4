#!/usr/bin/env bash
# Write a flavour's lock file: every Python package of its image (ComfyUI's
# requirements, the flavour's torch stack from a pyproject.toml extra, the worker's
# requirements.txt), pinned with hashes for Linux x86_64 and the image's Python (3.12).
# The Dockerfiles install exactly that file (pip --require-hashes --no-deps). Run it
# after changing any of those inputs or ComfyUI/comfyui.lock, for every flavour:
#   bash scripts/image/lock_requirements.sh             # cuda12.4: requirements.lock
#   bash scripts/image/lock_requirements.sh cuda12.8    # requirements-cuda12.8.lock
# (scripts/image/flavours.py names the flavours.) It uses the pinned ComfyUI tree and uv
# of the local runtime (scripts/dev/setup_local.sh).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
flavour=${1:-cuda12.4}
cd "$repo_root"
read -r extra lock < <(python3 scripts/image/flavours.py lock "$flavour")
bash scripts/dev/setup_local.sh
# shellcheck source=ComfyUI/comfyui.lock
. ComfyUI/comfyui.lock
cp "$local_dir/ComfyUI/requirements.txt" "$local_dir/comfyui-$COMFYUI_VERSION-requirements.txt"
python3 scripts/pins.py "$extra" >"$local_dir/pyproject-$extra-requirements.txt"
python3 scripts/pins.py --lock-excludes >"$local_dir/lock-excludes.txt"
# Another flavour starts from the default's pins (uv keeps an output file's pins where
# they still resolve): the flavours differ in their torch stack only.
[ "$lock" = requirements.lock ] || cp requirements.lock "$lock"
"$local_dir/venv/bin/uv" pip compile --quiet --native-tls \
  --python-version 3.12 --python-platform x86_64-manylinux_2_28 --generate-hashes \
  --custom-compile-command "bash scripts/image/lock_requirements.sh${1:+ $1}" \
  --excludes "$local_dir/lock-excludes.txt" \
  "$local_dir/pyproject-$extra-requirements.txt" "$local_dir/comfyui-$COMFYUI_VERSION-requirements.txt" requirements.txt \
  -o "$lock"
# Paths of the local runtime say nothing to a reader: name the inputs by what they are.
sed -i -E -e 's#-r [^ ]*comfyui-(v[^ ]*)-requirements\.txt#-r ComfyUI \1 requirements.txt#' \
  -e "s#-r [^ ]*pyproject-$extra-requirements\\.txt#pyproject.toml [$extra]#" "$lock"
echo "wrote $lock ($(grep -c '^[a-z]' "$lock") packages)"
