"""The local runtime (scripts/dev/setup_local.sh) gives a ComfyUI whose core nodes all import."""

from __future__ import annotations

import json
import urllib.request


def test_issue20_14_every_core_node_imports_audio_included(comfyui):
    log = comfyui.log_file.read_text(errors="replace")
    assert "Cannot import" not in log, comfyui.log_tail()
    assert "did not import correctly" not in log, comfyui.log_tail()
    with urllib.request.urlopen(f"http://{comfyui.host}/object_info") as response:
        nodes = json.load(response)
    assert {"LoadAudio", "SaveAudio"} <= set(nodes)
