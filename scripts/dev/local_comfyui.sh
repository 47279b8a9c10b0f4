#!/usr/bin/env bash
# Start or stop the local ComfyUI (CPU) that the local quick start and manual tests use.
#   scripts/dev/local_comfyui.sh start   # runs scripts/dev/setup_local.sh if needed, waits until it answers
#   scripts/dev/local_comfyui.sh stop
# It listens on ${COMFY_HOST:-127.0.0.1:8188}, logs to .local/comfyui.log and writes
# its PID to .local/comfyui.pid: point the worker at it with COMFY_HOST,
# COMFY_PID_FILE and COMFYUI_PATH (scripts/dev/run_local.sh does).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
host_port=${COMFY_HOST:-127.0.0.1:8188}
pid_file=$local_dir/comfyui.pid
log_file=$local_dir/comfyui.log

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then echo "ComfyUI already running (pid $(cat "$pid_file"))"; exit 0; fi
    if (exec 3<>"/dev/tcp/${host_port%:*}/${host_port##*:}") 2>/dev/null; then
      echo "$host_port is already in use by another program (not the ComfyUI this script starts):" \
        "stop it, or set COMFY_HOST to a free host:port" >&2
      exit 1
    fi
    bash "$repo_root/scripts/dev/setup_local.sh"
    read -r -a launch_flags <<<"$(sed 's/#.*//' "$repo_root/ComfyUI/launch.args" | tr '\n' ' ')"
    # The folders of models jobs fetch by URL (MODEL_CACHE_DIR), as start.sh adds them.
    model_cache=${MODEL_CACHE_DIR:-$local_dir/model-cache}
    mkdir -p "$model_cache"
    sed -e 's#^runpod_volume:#model_cache:#' -e "s#base_path: .*#base_path: $model_cache/#" \
      "$repo_root/ComfyUI/extra_model_paths.yaml" >"$local_dir/model-cache-paths.yaml"
    cd "$local_dir/ComfyUI"
    # --cpu: no GPU here. --disable-api-nodes: Comfy.org API nodes need network and a key.
    nohup "$local_dir/venv/bin/python" main.py --listen "${host_port%:*}" --port "${host_port##*:}" \
      "${launch_flags[@]}" --cpu --disable-api-nodes --extra-model-paths-config "$local_dir/model-cache-paths.yaml" \
      >"$log_file" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 1 600); do
      if curl -fs "http://$host_port/prompt" >/dev/null; then
        echo "ComfyUI is up at http://$host_port (pid $(cat "$pid_file"), log $log_file)"; exit 0
      fi
      running || { echo "ComfyUI exited during start-up; last lines of $log_file:" >&2; tail -20 "$log_file" >&2; exit 1; }
      sleep 0.2
    done
    echo "ComfyUI did not answer within 120 s; see $log_file" >&2; exit 1
    ;;
  stop)
    if running; then kill "$(cat "$pid_file")"; echo "stopped ComfyUI"; fi
    rm -f "$pid_file"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
