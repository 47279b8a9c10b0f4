#!/usr/bin/env bash
# RunPod on localhost: a local endpoint (default http://127.0.0.1:8000/v2/local, the
# jobs page at http://127.0.0.1:8000/) and a worker serving it, started through
# start.sh exactly as in the image (ComfyUI on CPU, default 127.0.0.1:8189, then
# rp_handler.py in RunPod's production mode). Options go to `python -m local_endpoint`:
#   bash scripts/dev/local_endpoint.sh --port 8010 --comfy-host 127.0.0.1:8190 --api-key secret
# Any HTTP client then works as against RunPod, e.g.
#   .local/venv/bin/comfy-client run examples/txt2img-local.json --base-url http://127.0.0.1:8000/v2/local
# Stop with Ctrl-C.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}

bash "$repo_root/scripts/dev/setup_local.sh"
export COMFYUI_PATH=$local_dir/ComfyUI
export PYTHON=$local_dir/venv/bin/python
# Models jobs fetch by URL stay with this checkout (start.sh's default is shared /tmp).
export MODEL_CACHE_DIR=${MODEL_CACHE_DIR:-$local_dir/model-cache}
# The named workflows on the generated checkpoint (scripts/dev/make_local_workflows.py).
export WORKFLOWS_DIR=${WORKFLOWS_DIR:-$local_dir/workflows}
# ComfyUI's PID file is the endpoint's own (python -m local_endpoint makes one per endpoint).
export COMFY_EXTRA_ARGS=${COMFY_EXTRA_ARGS:---cpu --disable-api-nodes}
cd "$repo_root"
exec "$PYTHON" -m local_endpoint --comfy-host "${COMFY_HOST:-127.0.0.1:8189}" --worker-command "bash start.sh" "$@"
