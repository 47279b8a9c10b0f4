#!/usr/bin/env bash
# Make the "Run on RunPod" editor extension installable on its own: commits the committed
# editor_extension/ folder of HEAD as the root of a branch (default: editor-extension), so
# that ComfyUI-Manager's "Install via Git URL" with `<repository URL>@editor-extension`,
# or `git clone -b editor-extension <repository URL>`, installs just the extension into
# custom_nodes/. The branch's history is its own: one commit per change of the folder,
# each naming the worker commit it came from. Run it in the repository, then push the branch:
#   bash scripts/publish_editor_extension.sh && git push origin editor-extension
set -euo pipefail

branch=${1:-editor-extension}
cd "$(git rev-parse --show-toplevel)"

tree=$(git rev-parse "HEAD:editor_extension")
source_commit=$(git rev-parse --short HEAD)
parent=$(git rev-parse -q --verify "refs/heads/$branch" || true)

if [ -n "$parent" ] && [ "$(git rev-parse "$parent^{tree}")" = "$tree" ]; then
  echo "$branch is up to date with editor_extension/ of $source_commit"
  exit 0
fi

commit=$(git commit-tree "$tree" ${parent:+-p "$parent"} -m "Run on RunPod, from editor_extension/ of $source_commit")
git update-ref "refs/heads/$branch" "$commit" ${parent:+"$parent"}
echo "$branch is now $(git rev-parse --short "$commit"): editor_extension/ of $source_commit"
echo "push it: git push origin $branch"
