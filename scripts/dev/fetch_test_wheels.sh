#!/usr/bin/env bash
# The wheels of the volume node pack tests (tests/support/volume_pack_wheels.txt), by hash, into
# .local/test-wheels, idempotently: the tests offer them to pip with no index. setup_test_tools.sh
# and image_test.sh run it.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir=${LOCAL_DIR:-$repo_root/.local}
wheels=$local_dir/test-wheels
stamp=$(sha256sum "$repo_root/tests/support/volume_pack_wheels.txt" | cut -c1-16)
if [ ! -f "$wheels/.wheels-$stamp" ]; then
  printf '[fetch_test_wheels] fetching the wheels of the volume node pack tests into %s\n' "$wheels" >&2
  rm -rf "$wheels"
  "$local_dir/venv/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$repo_root/tests/support/volume_pack_wheels.txt" -d "$wheels"
  touch "$wheels/.wheels-$stamp"
fi
