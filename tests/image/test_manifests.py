import json

import pytest
from manifests import ManifestError, load_custom_nodes, load_models

from .conftest import REPO_ROOT


def test_the_shipped_manifests_are_valid():
    load_custom_nodes(REPO_ROOT / "ComfyUI" / "custom_nodes.json")
    [model] = load_models(REPO_ROOT / "ComfyUI" / "models.json")
    assert str(model.relative_path) == "checkpoints/v1-5-pruned-emaonly-fp16.safetensors"


def write(tmp_path, document) -> object:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    return path


def test_custom_node_problems_are_listed_with_their_place(tmp_path):
    path = write(
        tmp_path,
        {
            "custom_nodes": [
                {"name": "../x", "repo": "git@github.com:a/b", "commit": "main"},
                {"name": "ok", "repo": "https://github.com/a/b"},
                {"name": "dup", "repo": "https://github.com/a/b", "commit": "a" * 40, "extra": 1},
                {"name": "dup", "repo": "https://github.com/a/c", "commit": "b" * 40},
            ]
        },
    )
    with pytest.raises(ManifestError) as info:
        load_custom_nodes(path)
    message = str(info.value)
    for expected in (
        "custom_nodes[0].name",
        "custom_nodes[0].repo",
        "custom_nodes[0].commit: must be a full 40-hex",
        "custom_nodes[1].commit: is required",
        "custom_nodes[2].extra: is not a known field",
        "'dup' appears twice",
    ):
        assert expected in message


def test_model_problems_are_listed_with_their_place(tmp_path):
    path = write(
        tmp_path,
        {
            "models": [
                {"repo_id": "nope", "file": "../x.bin", "revision": "main", "sha256": "abc", "folder": "check points"},
                {"repo_id": "a/b", "file": "m.safetensors", "revision": "main", "sha256": "0" * 64, "folder": "loras"},
                {
                    "repo_id": "a/c",
                    "file": "sub/m.safetensors",
                    "revision": "main",
                    "sha256": "1" * 64,
                    "folder": "loras",
                },
            ]
        },
    )
    with pytest.raises(ManifestError) as info:
        load_models(path)
    message = str(info.value)
    for expected in (
        "models[0].repo_id",
        "models[0].file",
        "models[0].sha256",
        "models[0].folder",
        "two entries write loras/m.safetensors",
    ):
        assert expected in message


def test_not_json_or_wrong_shape(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ManifestError, match="cannot be read as JSON"):
        load_models(tmp_path / "bad.json")
    with pytest.raises(ManifestError, match="'models' list"):
        load_models(write(tmp_path, {"model": []}))
