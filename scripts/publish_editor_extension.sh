#!/usr/bin/env bash
# Make the "Run on RunPod" editor extension installable on its own: commits the committed
# editor_extension/ folder of HEAD as the root of a branch (default: editor-extension), with
# the endpoint client it talks through (comfy_worker_client/, vendored beside it), so
# that ComfyUI-Manager's "Install via Git URL" with `<repository URL>@editor-extension`,
# or `git clone -b editor-extension <repository URL>`, installs just the extension into
# custom_nodes/. The branch's history is its own: one commit per change of the folder,
# each naming the worker commit it came from. Run it in the repository, then push the branch:
#   bash scripts/publish_editor_extension.sh && git push origin editor-extension
set -euo pipefail

branch=${1:-editor-extension}
cd "$(git rev-parse --show-toplevel)"

# The branch's tree: editor_extension/ at the root, comfy_worker_client/ inside it, built in
# an index of its own (the working tree and the real index are not touched).
GIT_INDEX_FILE=$(mktemp)
export GIT_INDEX_FILE
trap 'rm -f "$GIT_INDEX_FILE"' EXIT
git read-tree "HEAD:editor_extension"
git read-tree --prefix=comfy_worker_client/ "HEAD:comfy_worker_client"
tree=$(git write-tree)
source_commit=$(git rev-parse --short HEAD)
parent=$(git rev-parse -q --verify "refs/heads/$branch" || true)

if [ -n "$parent" ] && [ "$(git rev-parse "$parent^{tree}")" = "$tree" ]; then
  echo "$branch is up to date with editor_extension/ (and comfy_worker_client/) of $source_commit"
  exit 0
fi

commit=$(git commit-tree "$tree" ${parent:+-p "$parent"} -m "Run on RunPod, from editor_extension/ of $source_commit")
git update-ref "refs/heads/$branch" "$commit" ${parent:+"$parent"}
echo "$branch is now $(git rev-parse --short "$commit"): editor_extension/ of $source_commit"
echo "push it: git push origin $branch"
