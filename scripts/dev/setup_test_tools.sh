#!/usr/bin/env bash
# What the client and page tests need beyond Python, idempotently:
#   chromium, chromedriver   Debian's packages (tests/integration/test_page.py), installed with
#                            apt when missing and running as root (as CI does)
#   .local/js                the npm runpod-sdk pinned in tests/js/package-lock.json
#                            (tests/integration/test_sdk_clients.py) and ESLint (its config
#                            tests/js/eslint.config.mjs, run by scripts/ci/test.sh), with node and npm
#   .local/test-wheels       the wheels of the volume node pack tests (tests/support/volume_pack_wheels.txt)
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
log() { printf '[setup_test_tools] %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    log "installing chromium and chromium-driver (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  else
    log "chromium or chromedriver missing and not root: the page test will be skipped"
  fi
fi

js_dir=$local_dir/js
stamp=$(sha256sum "$repo_root/tests/js/package-lock.json" | cut -c1-16)
if [ ! -f "$js_dir/.lock-$stamp" ]; then
  if command -v npm >/dev/null; then
    log "installing the npm runpod-sdk and ESLint into $js_dir"
    mkdir -p "$js_dir"
    rm -f "$js_dir"/.lock-*
    cp "$repo_root/tests/js/package.json" "$repo_root/tests/js/package-lock.json" "$js_dir/"
    (cd "$js_dir" && npm ci --silent --no-audit --no-fund)
    touch "$js_dir/.lock-$stamp"
  else
    log "npm missing: the JavaScript SDK test and ESLint will be skipped"
  fi
fi
# ESLint's config beside the packages it imports (copied each time: it is small).
if [ -d "$js_dir/node_modules" ]; then cp "$repo_root/tests/js/eslint.config.mjs" "$js_dir/"; fi

bash "$repo_root/scripts/dev/fetch_test_wheels.sh"
