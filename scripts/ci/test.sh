#!/usr/bin/env bash
# The test command (README, .ci/run): set up what is missing, lint, type-check, then
# run the unit tests and the integration tests against a real ComfyUI on CPU. Extra
# arguments go to pytest, e.g. scripts/ci/test.sh tests/unit -k job_input
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
cd "$repo_root"

bash scripts/dev/setup_local.sh
bash scripts/dev/setup_test_tools.sh
python=$local_dir/venv/bin/python

echo "== ruff"
"$python" -m ruff check .
"$python" -m ruff format --check . >/dev/null || {
  echo "ruff format would change files: run '$python -m ruff format .'" >&2; exit 1; }
echo "== mypy (the worker, the local endpoint, the client, the editor bridge, tests/support, benchmarks: pyproject.toml [tool.mypy])"
"$python" -m mypy
echo "== generated files are fresh (the flavours' Dockerfiles and hub.json, the job contract's copies); hadolint, shellcheck"
"$python" scripts/image/flavours.py check
"$python" -m comfy_worker.core.contract check
"$local_dir/venv/bin/hadolint" Dockerfile Dockerfile.cuda12.8
"$local_dir/venv/bin/shellcheck" -x start.sh scripts/*.sh scripts/*/*.sh .ci/run
echo "== eslint (the jobs page, the editor extension: tests/js/eslint.config.mjs)"
if [ -x "$local_dir/js/node_modules/.bin/eslint" ]; then
  "$local_dir/js/node_modules/.bin/eslint" -c "$local_dir/js/eslint.config.mjs" local_endpoint/page editor_extension/web
else
  echo "npm is missing: the JavaScript is not linted" >&2
fi
echo "== pytest"
exec "$python" -m pytest "$@"
