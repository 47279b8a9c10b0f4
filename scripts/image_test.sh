#!/usr/bin/env bash
# Build the real Dockerfile on this machine and run jobs in the image (docs/deploy.md: "Build
# and try the image locally"). Starts a Docker engine if none answers (installing Debian's
# docker.io and debootstrap where missing), builds the image with local stand-ins for
# the base image, uv, Hugging Face and a custom node repository
# (tests/container/image_build.py says which and why), prints the image's size and
# build times, then runs tests/container against it. Extra arguments go to pytest.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
work=${IMAGE_TEST_DIR:-/var/tmp/comfy-worker-image-test}
log() { printf '[image_test] %s\n' "$*" >&2; }
cd "$repo_root"
mkdir -p "$work"

bash scripts/dev/setup_local.sh
bash scripts/dev/fetch_test_wheels.sh  # the volume node pack test's

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $work/dockerd.log)"
  nohup dockerd --iptables=false --bridge=none --storage-driver=overlay2 >"$work/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see $work/dockerd.log"; exit 1; }
fi

exec "$local_dir/venv/bin/python" -m tests.container.image_build "$@"
