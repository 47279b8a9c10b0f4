"""Model references: their forms, what is refused, and which inputs they may be in (no network)."""

from __future__ import annotations

import pytest

from comfy_worker.core.errors import InvalidJobInput
from comfy_worker.core.sources import BucketObject, HubFile, WebFile
from comfy_worker.models.remote_models import Credentials, find_remote_models, parse_reference
from comfy_worker.request.workflow import Workflow

SHA = "ab" * 32


def test_url_and_hub_forms():
    url = parse_reference(f"https://cdn.example.com/a/My%20Style.safetensors?sig=x#sha256={SHA.upper()}", False)
    assert (url.source, url.sha256, url.name) == (
        WebFile("https://cdn.example.com/a/My%20Style.safetensors?sig=x"), SHA, "My_Style.safetensors",
    )  # fmt: skip
    assert url.shown == "https://cdn.example.com/a/My%20Style.safetensors"  # no query: it may be a signature

    hub = parse_reference("hf://owner/repo/loras/sub/style.safetensors@v1.0", False)
    assert (hub.source, hub.name) == (HubFile("owner/repo", "loras/sub/style.safetensors", "v1.0"), "style.safetensors")
    assert parse_reference("hf://owner/repo/x.safetensors", False).source == HubFile("owner/repo", "x.safetensors")
    assert hub.key != parse_reference("hf://owner/repo/loras/sub/style.safetensors@v2.0", False).key

    s3 = parse_reference(f"s3://models/loras/style.safetensors#sha256={SHA}", False)
    assert (s3.source, s3.sha256) == (BucketObject("models", "loras/style.safetensors"), SHA)
    assert s3.name == "style.safetensors"
    assert s3.shown == "s3://models/loras/style.safetensors"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hf://owner/x.safetensors", "is not hf://<owner>/<repo>/<file path>[@revision]"),
        ("https://h/x.safetensors#sha256=123", "is not 64 hex digits"),
        ("https://h/x.safetensors#frag", "has a '#' part"),
        ("https://h/model.ckpt", "ALLOW_PICKLE_MODELS"),
        ("https://h/page.html", "does not name a model file"),
        ("https:///x.safetensors", "is a URL without a host"),
        ("s3://models", "is an s3:// reference without a bucket and a key"),
        ("s3://models/loras/style.pt", "ALLOW_PICKLE_MODELS"),
    ],
)
def test_malformed_or_unsafe_references_say_why(value, expected):
    with pytest.raises(ValueError, match=None) as info:
        parse_reference(value, False)
    assert expected in str(info.value)


def test_pickles_when_allowed():
    assert parse_reference("https://h/model.ckpt", True).name == "model.ckpt"


def test_only_model_inputs_are_fetched_and_problems_name_the_field():
    workflow = Workflow({
        "1": {"class_type": "LoraLoader", "inputs": {"lora_name": "https://h/a.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "https://example.com is a website"}},
        "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "hf://o/r/m.ckpt"}},
    })  # fmt: skip
    inputs = {"LoraLoader.lora_name": "loras", "CheckpointLoaderSimple.ckpt_name": "checkpoints"}
    with pytest.raises(InvalidJobInput) as info:
        find_remote_models(workflow, inputs, allow_pickle=False)
    [problem] = info.value.details["problems"]
    assert problem["field"] == "input.workflow.3.inputs.ckpt_name"

    [lora, ckpt] = find_remote_models(workflow, inputs, allow_pickle=True)
    assert (lora.node_id, lora.folder, ckpt.folder) == ("1", "loras", "checkpoints")


def test_credentials_go_to_their_host_only_and_do_not_print():
    credentials = Credentials("hf_x", {"models.example.com": {"Authorization": "Bearer t"}})
    assert credentials.headers_for("https://MODELS.example.com/a") == {"Authorization": "Bearer t"}
    assert credentials.headers_for("https://cdn.example.net/a") == {}
    assert "hf_x" not in repr(credentials)
    assert "Bearer" not in repr(credentials)
