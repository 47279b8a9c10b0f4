#!/usr/bin/env bash
# Container entry point: start ComfyUI, read the first job's models meanwhile, then run the worker.
#
# ComfyUI listens on COMFY_HOST (127.0.0.1:8188: only the worker talks to it) with
# the flags in ComfyUI/launch.args, --extra-model-paths-config for models on a
# network volume (/runpod-volume/models), and COMFY_EXTRA_ARGS (e.g. "--cpu" to run
# on a machine without a GPU).
# Its PID goes to COMFY_PID_FILE: the worker waits for ComfyUI while that process
# lives and fails fast once it has died; start.sh starts it again when it exits,
# unless it died before it ever answered (see the end). tcmalloc is preloaded into
# ComfyUI when installed (lower memory fragmentation when models load and unload).
#
# Settings (environment): COMFYUI_PATH, COMFY_HOST, COMFY_PID_FILE, COMFY_EXTRA_ARGS,
# COMFY_API_NODES (true: load Comfy.org's API nodes; off by default), PYTHON, WARMUP_JOB (a job JSON file rp_handler.py runs once before taking
# jobs; the prefetch reads its models),
# PREFETCH (auto|off), PREFETCH_MODELS, PREFETCH_MEMORY_RESERVE_GB (comfy_worker/models/prefetch.py),
# BOOT_READAHEAD (auto|off), BOOT_READAHEAD_MAX_FILE_MB (comfy_worker/models/boot_readahead.py),
# RUNPOD_HF_CACHE (RunPod's cached models, /runpod-volume/huggingface-cache/hub),
# MODELS_TO_VOLUME (true: fetch ComfyUI/models.json onto /runpod-volume/models once),
# MODEL_CACHE_DIR (models fetched by jobs; default /runpod-volume/model-cache with a volume,
# else /tmp/comfy-model-cache), SUBMIT_RECORDS_DIR (default /runpod-volume/comfy-worker/submits
# with a volume), VOLUME_CUSTOM_NODES_DIR (node packs loaded beside the image's; default
# /runpod-volume/ComfyUI/custom_nodes, pinned by a custom_nodes.json beside it),
# SERVE_API_LOCALLY (true: the SDK's local HTTP API on port 8000 for development),
# SHUTDOWN_GRACE_S (25: how long a SIGTERM lets the jobs in flight run on; see shut_down).
# Arguments are passed to rp_handler.py (e.g. --test_input '{...}').
set -euo pipefail

worker_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The worker's own defaults (comfy_worker/core/settings.py; a test keeps them equal):
# start.sh needs them too, to launch ComfyUI where the worker will look.
export COMFYUI_PATH=${COMFYUI_PATH:-/comfyui}
export COMFY_HOST=${COMFY_HOST:-127.0.0.1:8188}
export COMFY_PID_FILE=${COMFY_PID_FILE:-/tmp/comfyui.pid}
python_bin=${PYTHON:-python}
volume_models=${VOLUME_MODELS_DIR:-/runpod-volume/models}
log() { printf '[start.sh] %s\n' "$*" >&2; }

tcmalloc=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*libtcmalloc\.so\.[0-9]*' | head -n 1 || true)
if [ -n "$tcmalloc" ]; then
  log "preloading $tcmalloc into ComfyUI"
else
  log "tcmalloc not installed; ComfyUI uses the default allocator"
fi

# A second server cannot listen on a taken port, and the worker would talk to the first.
if (exec 3<>"/dev/tcp/${COMFY_HOST%:*}/${COMFY_HOST##*:}") 2>/dev/null; then
  log "COMFY_HOST $COMFY_HOST is already in use by another program; stop it or set COMFY_HOST to a free host:port"
  exit 1
fi

if [ "${MODELS_TO_VOLUME:-false}" = true ]; then
  if [ -d "$(dirname "$volume_models")" ]; then
    log "fetching ComfyUI/models.json onto $volume_models (skips files already verified)"
    "$python_bin" "$worker_dir/scripts/image/fetch_models.py" --manifest "$worker_dir/ComfyUI/models.json" --models-dir "$volume_models"
  else
    log "MODELS_TO_VOLUME is set but no volume is mounted at $(dirname "$volume_models"); skipping"
  fi
fi

# Models that jobs fetch by URL or hf:// (comfy_worker/models/model_cache.py): on the network
# volume when one is mounted, so every worker shares one copy; ComfyUI reads the cache's
# model folders through a second paths file, written from the volume's (same folders).
if [ -z "${MODEL_CACHE_DIR:-}" ]; then
  if [ -d "$(dirname "$volume_models")" ]; then MODEL_CACHE_DIR=$(dirname "$volume_models")/model-cache
  else MODEL_CACHE_DIR=/tmp/comfy-model-cache; fi
fi
export MODEL_CACHE_DIR
mkdir -p "$MODEL_CACHE_DIR"
# Submit records (jobs' idempotency keys) on the volume when there is no bucket: shared by
# every worker, so a submit sent twice runs once (comfy_worker/transfer/submits.py).
if [ -z "${SUBMIT_RECORDS_DIR:-}" ] && [ -d "$(dirname "$volume_models")" ]; then
  SUBMIT_RECORDS_DIR=$(dirname "$volume_models")/comfy-worker/submits
  export SUBMIT_RECORDS_DIR
fi
# Custom node packs on the volume (comfy_worker/node_packs): those its custom_nodes.json pins
# are fetched at their commits first; then each pack is offered to ComfyUI unless it is refused
# (named in the log), with the Python packages they need in a layer cached on the volume.
volume_nodes=${VOLUME_CUSTOM_NODES_DIR:-$(dirname "$volume_models")/ComfyUI/custom_nodes}
volume_packs_dir=
volume_packs_paths=()
comfy_pythonpath=
if [ -d "$volume_nodes" ] || [ -f "$(dirname "$volume_nodes")/custom_nodes.json" ]; then
  if [ -f "$(dirname "$volume_nodes")/custom_nodes.json" ]; then
    "$python_bin" "$worker_dir/scripts/image/install_custom_nodes.py" --lock "$(dirname "$volume_nodes")/custom_nodes.json" \
      --into "$volume_nodes" || log "the volume's custom_nodes.json cannot be used (above)"
  fi
  volume_packs_dir=$(mktemp -d "${TMPDIR:-/tmp}/volume-node-packs.XXXXXX")
  if (cd "$worker_dir" && "$python_bin" -m comfy_worker.node_packs.volume_boot --packs "$volume_nodes" \
    --comfyui "$COMFYUI_PATH" --envs "$(dirname "$volume_models")/comfy-worker/node-envs" --out "$volume_packs_dir"); then
    volume_packs_paths=(--extra-model-paths-config "$volume_packs_dir/paths.yaml")
    comfy_pythonpath=$(cat "$volume_packs_dir/pythonpath")
    export VOLUME_NODE_PACKS=$volume_packs_dir/report.json
  else
    log "the volume's node packs could not be prepared (above); ComfyUI starts without them"
  fi
fi
cache_paths=$(mktemp "${TMPDIR:-/tmp}/model-cache-paths.XXXXXX")
sed -e 's#^runpod_volume:#model_cache:#' -e "s#base_path: .*#base_path: $MODEL_CACHE_DIR/#" \
  "$worker_dir/ComfyUI/extra_model_paths.yaml" >"$cache_paths"

read -r -a launch_flags <<<"$(sed 's/#.*//' "$worker_dir/ComfyUI/launch.args" | tr '\n' ' ')"
# Comfy.org's API nodes cost ComfyUI's boot ~0.5-1 s of imports; most endpoints never run them.
case "${COMFY_API_NODES:-false}" in
  1 | true | True | TRUE | yes | on) ;;
  *) launch_flags+=(--disable-api-nodes) ;;
esac
read -r -a extra_args <<<"${COMFY_EXTRA_ARGS:-}"

# Models ComfyUI/models.json takes from RunPod's model cache ("from": "runpod-cache"),
# linked into the model folders before ComfyUI lists them.
if grep -q '"runpod-cache"' "$worker_dir/ComfyUI/models.json" 2>/dev/null; then
  "$python_bin" "$worker_dir/scripts/image/link_cached_models.py" --manifest "$worker_dir/ComfyUI/models.json" \
    --models-dir "$COMFYUI_PATH/models" || log "linking models from RunPod's cache failed (see above)"
fi

# What the worker tells start.sh about a ComfyUI (comfy_worker/comfyui/comfy_process.py): the
# PID of one that answered, and of one the worker ended on purpose.
answered_file=$COMFY_PID_FILE.answered
ended_file=$COMFY_PID_FILE.ended
rm -f "$answered_file" "$ended_file"

# Read ahead the files ComfyUI's boot opens (listed at build: comfy_worker/models/boot_readahead.py),
# so a cold host's first boot finds them in memory; where they are cached already it stops at once.
if [ "${BOOT_READAHEAD:-auto}" != off ] && [ -f "$COMFYUI_PATH/boot-files.txt" ]; then
  (cd "$worker_dir" && exec "$python_bin" -m comfy_worker.models.boot_readahead replay "$COMFYUI_PATH/boot-files.txt") &
fi

start_comfyui() {
  (
    cd "$COMFYUI_PATH"
    if [ -n "$comfy_pythonpath" ]; then export PYTHONPATH=$comfy_pythonpath${PYTHONPATH:+:$PYTHONPATH}; fi
    LD_PRELOAD=${tcmalloc:-${LD_PRELOAD:-}} exec "$python_bin" main.py \
      --listen "${COMFY_HOST%:*}" --port "${COMFY_HOST##*:}" "${launch_flags[@]}" \
      --extra-model-paths-config "${EXTRA_MODEL_PATHS:-$worker_dir/ComfyUI/extra_model_paths.yaml}" \
      --extra-model-paths-config "$cache_paths" "${volume_packs_paths[@]}" "${extra_args[@]}"
  ) &
  comfy_pid=$!
  echo "$comfy_pid" >"$COMFY_PID_FILE"
  log "ComfyUI starting (pid $comfy_pid) on $COMFY_HOST"
}
start_comfyui

# Read the first job's model files into the page cache while ComfyUI boots
# (comfy_worker/models/prefetch.py): at idle CPU and I/O priority, and pausing while
# ComfyUI reads from storage itself, so the boot is not slowed.
prefetch_pid=
if [ "${PREFETCH:-auto}" != off ]; then
  priority=(nice -n 19)
  if command -v ionice >/dev/null; then priority+=(ionice -c 3); fi
  (cd "$worker_dir" && exec "${priority[@]}" "$python_bin" -m comfy_worker.models.prefetch) &
  prefetch_pid=$!
fi

worker_pid=
shutdown_grace_s=${SHUTDOWN_GRACE_S:-25}
case "$shutdown_grace_s" in
  '' | *[!0-9]*) log "SHUTDOWN_GRACE_S must be a whole number of seconds, not '$shutdown_grace_s'"; exit 1 ;;
esac
# 0 once the process has exited, 1 if it still runs after that many tenths of a second.
wait_gone() {
  local _
  for _ in $(seq 1 "$2"); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$1" 2>/dev/null
}
# Stop ComfyUI and wait (up to 10 s, then SIGKILL) until it has exited: start.sh never
# returns while ComfyUI still holds the GPU or its port.
stop_comfyui() {
  kill "$comfy_pid" 2>/dev/null || true
  wait_gone "$comfy_pid" 100 || kill -9 "$comfy_pid" 2>/dev/null || true
}
# RunPod's SIGTERM (scaling the worker down): the worker first, so it takes no new job and
# finishes the jobs in flight while ComfyUI still runs them, for up to SHUTDOWN_GRACE_S (keep
# it under the platform's own grace before SIGKILL); then SIGUSR1 has it fail what is left,
# naming the shutdown, with their prompts interrupted; 5 s later it is killed. ComfyUI last.
shut_down() {
  trap - TERM INT
  if [ -n "$prefetch_pid" ]; then kill "$prefetch_pid" 2>/dev/null || true; prefetch_pid=; fi
  if [ -n "$worker_pid" ] && kill -TERM "$worker_pid" 2>/dev/null; then
    log "stopping: the worker finishes its jobs in flight (up to ${shutdown_grace_s} s), then ComfyUI stops"
    if ! wait_gone "$worker_pid" $((shutdown_grace_s * 10)); then
      log "SHUTDOWN_GRACE_S ran out: the jobs still in flight fail"
      kill -USR1 "$worker_pid" 2>/dev/null || true
      wait_gone "$worker_pid" 50 || kill -9 "$worker_pid" 2>/dev/null || true
    fi
  fi
  stop_comfyui
}
cleanup() {
  rm -f "$cache_paths" "$answered_file" "$ended_file"
  if [ -n "$volume_packs_dir" ]; then rm -rf "$volume_packs_dir"; fi
  [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null || true
  if [ -n "$prefetch_pid" ] && kill "$prefetch_pid" 2>/dev/null; then
    log "the prefetch was still reading (it runs at idle priority); stopped"
  fi
  stop_comfyui
}
trap 'shut_down; exit 143' TERM INT
trap cleanup EXIT

# The worker's relative paths (WORKFLOWS_DIR's default, ComfyUI/workflows) start here.
cd "$worker_dir"

if [ "${SERVE_API_LOCALLY:-false}" = true ]; then
  log "serving the SDK's local API on 0.0.0.0:8000 (development only)"
  "$python_bin" "$worker_dir/rp_handler.py" --rp_serve_api --rp_api_host 0.0.0.0 "$@" &
else
  "$python_bin" "$worker_dir/rp_handler.py" "$@" &
fi
worker_pid=$!

# Supervise until the worker exits. A ComfyUI the worker ended (its prompt ignored an
# interrupt) is always started again, however young, so the next job is served; so is
# one that died after it had answered. One that died before it ever answered stays
# down, since starting it again would only crash again (a custom node failing to
# import, say): jobs then fail with ComfyUI's death as the cause, and its log above
# says why.
pid_in() { [ -f "$1" ] && [ "$(cat "$1" 2>/dev/null)" = "$comfy_pid" ]; }
while true; do
  status=0
  wait -n -p exited "$worker_pid" "$comfy_pid" || status=$?
  if [ "${exited:-}" = "$worker_pid" ]; then
    exit "$status"
  fi
  if pid_in "$ended_file"; then
    log "the worker ended ComfyUI (a prompt ignored its interrupt); starting a new one"
  elif pid_in "$answered_file"; then
    log "ComfyUI exited (status $status); starting a new one"
  else
    log "ComfyUI exited (status $status) before it ever answered; not restarting it"
    status=0
    wait "$worker_pid" || status=$?
    exit "$status"
  fi
  start_comfyui
done
