"""What a job brings in, parsed once: each form, each refusal, and how each is shown (no I/O)."""

from __future__ import annotations

import base64

import pytest

from comfy_worker.core.sources import (
    FILE_SOURCES,
    MODEL_SOURCES,
    BucketObject,
    HubFile,
    Inline,
    WebFile,
    file_source,
    is_reference,
    model_source,
    parse_source,
    redact,
    scrub_urls,
)

PNG = b"\x89PNG\r\n\x1a\n-image-"


def test_each_form_is_parsed_into_its_source():
    encoded = base64.b64encode(PNG).decode()
    assert file_source(encoded) == Inline(PNG)
    assert file_source(f"data:image/png;charset=utf-8;base64,{encoded}") == Inline(PNG)
    assert file_source(base64.urlsafe_b64encode(PNG).decode().rstrip("=")) == Inline(PNG)
    assert file_source("https://cdn.example.com/a/b.png?sig=1") == WebFile("https://cdn.example.com/a/b.png?sig=1")
    assert file_source("s3://inputs/jobs/7/photo.png") == BucketObject("inputs", "jobs/7/photo.png")
    assert model_source("hf://owner/repo/loras/x.safetensors@v2") == HubFile("owner/repo", "loras/x.safetensors", "v2")
    assert model_source("hf://owner/repo/x.safetensors") == HubFile("owner/repo", "x.safetensors", "main")


def test_a_source_already_parsed_or_bytes_already_decoded_pass_as_they_are():
    source = WebFile("https://cdn.example.com/a.png")
    assert file_source(source) is source
    assert file_source(PNG) == Inline(PNG)


@pytest.mark.parametrize(
    ("value", "accepts", "expected"),
    [
        ("hf://owner/repo/x.png", FILE_SOURCES, "must be a base64 string, a data URI, an http(s) URL or an s3://"),
        (base64.b64encode(PNG).decode(), MODEL_SOURCES, "must be an http(s) URL, an s3://bucket/key reference or"),
        (PNG, MODEL_SOURCES, "must be an http(s) URL"),
        (42, FILE_SOURCES, "must be a base64 string"),
        ("", FILE_SOURCES, "is empty"),
        ("not base64!", FILE_SOURCES, "is not valid base64"),
        ("https:///a.png", FILE_SOURCES, "is a URL without a host"),
        ("https://h:99999/a.png", FILE_SOURCES, "is a URL with an invalid port"),
        ("https://h/a b.png", FILE_SOURCES, "is a URL with spaces or control characters"),
        ("s3://inputs", FILE_SOURCES, "is an s3:// reference without a bucket and a key"),
        ("s3://a/../b/x.png", FILE_SOURCES, "whose key has an empty, '.' or '..' segment"),
        ("s3://a//x.png", FILE_SOURCES, "whose key has an empty"),
        ("hf://owner/x.safetensors", MODEL_SOURCES, "is not hf://<owner>/<repo>/<file path>[@revision]"),
        ("hf://owner/repo/../x.safetensors", MODEL_SOURCES, "is not hf://"),
    ],
)
def test_what_is_wrong_is_said(value, accepts, expected):
    with pytest.raises(ValueError, match=None) as info:
        parse_source(value, accepts)
    assert expected in str(info.value)


def test_messages_show_no_query_and_no_credentials():
    web = WebFile("https://user:pw@cdn.example.com/a/My%20b.png?X-Amz-Signature=abc")
    assert web.shown == "https://cdn.example.com/a/My%20b.png"
    assert "abc" not in repr(web)
    assert "pw" not in repr(web)
    assert web.path == "/a/My b.png"
    assert BucketObject("in", "a/b.png").shown == "s3://in/a/b.png"
    assert HubFile("o/r", "f.safetensors").shown == "hf://o/r/f.safetensors@main"
    assert PNG.hex() not in repr(Inline(PNG))
    assert redact("https://user:pw@cdn.example.com/a/b.png?X-Amz-Signature=abc") == "https://cdn.example.com/a/b.png"
    text = "refused: https://h.example/a?sig=1 then s3://b/k?x=2"
    assert scrub_urls(text) == "refused: https://h.example/a then s3://b/k"


def test_references_are_told_from_installed_names():
    assert all(is_reference(value) for value in ("https://h/a", "http://h/a", "s3://b/k", "hf://o/r/f"))
    assert not any(is_reference(value) for value in ("model.safetensors", "sub/https.safetensors", 3, None))
