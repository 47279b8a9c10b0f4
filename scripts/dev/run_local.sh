#!/usr/bin/env bash
# The local quick start: set up what is missing, start a CPU ComfyUI, run the default
# txt2img (test_input.json on the generated noise checkpoint) through the handler, and
# write the PNG into ./out/. ComfyUI keeps running; stop it with
# scripts/dev/local_comfyui.sh stop.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}

bash "$repo_root/scripts/dev/local_comfyui.sh" start
export COMFY_HOST=${COMFY_HOST:-127.0.0.1:8188}
export COMFY_PID_FILE=$local_dir/comfyui.pid
export COMFYUI_PATH=$local_dir/ComfyUI
export MODEL_CACHE_DIR=${MODEL_CACHE_DIR:-$local_dir/model-cache}  # local_comfyui.sh reads it too
export WORKFLOWS_DIR=${WORKFLOWS_DIR:-$local_dir/workflows}  # on the generated checkpoint
exec "$local_dir/venv/bin/python" "$repo_root/scripts/dev/run_local_job.py" --out "${OUT_DIR:-$repo_root/out}" "$@"
