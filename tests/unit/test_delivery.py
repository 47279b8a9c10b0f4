from pathlib import Path

import pytest

from comfy_worker.delivery import choose_storage, inline_size
from comfy_worker.errors import InvalidJobInput, OutputTooLarge
from comfy_worker.inputs import redact
from comfy_worker.job_input import OutputOptions
from comfy_worker.outputs import OutputFile, mime_type_of, texts_in_history

BUCKET = object()  # stands in for an S3Storage: choose_storage only passes it on


@pytest.fixture
def file_of_3000_bytes(tmp_path) -> OutputFile:
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 3000)
    return OutputFile("9", "a.png", "", "output", path, "image/png")


def test_inline_size_counts_base64_and_overhead(file_of_3000_bytes):
    assert inline_size([file_of_3000_bytes], [{"node_id": "1", "text": "abc"}]) == 4000 + 512 + 3 + 512


@pytest.mark.parametrize(
    "storage, bucket, limit, expected",
    [
        ("auto", None, 10_000, None),  # no bucket, small: inline
        ("auto", BUCKET, 10_000, BUCKET),  # a bucket is configured: upload
        ("base64", BUCKET, 10_000, None),  # asked inline and it fits
        ("base64", BUCKET, 100, BUCKET),  # asked inline but too large: the bucket takes it
        ("s3", BUCKET, 10_000, BUCKET),
    ],
)
def test_choose_storage(file_of_3000_bytes, storage, bucket, limit, expected):
    assert choose_storage(OutputOptions(storage=storage), bucket, [file_of_3000_bytes], [], limit) is expected


def test_too_large_without_bucket_names_size_limit_and_ways_out(file_of_3000_bytes):
    with pytest.raises(OutputTooLarge) as info:
        choose_storage(OutputOptions(), None, [file_of_3000_bytes], [], 1000)
    assert info.value.details == {"size_bytes": 4512, "limit_bytes": 1000}
    assert "BUCKET_ENDPOINT_URL" in info.value.message and '"format": "webp"' in info.value.message


def test_s3_without_bucket_is_an_input_error(file_of_3000_bytes):
    with pytest.raises(InvalidJobInput, match="input.output.storage"):
        choose_storage(OutputOptions(storage="s3"), None, [file_of_3000_bytes], [], 10_000)


@pytest.mark.parametrize(
    "item, expected",
    [
        ({"filename": "a.png"}, "image/png"),
        ({"filename": "a.webp"}, "image/webp"),
        ({"filename": "a.webm"}, "video/webm"),
        ({"filename": "a.mp4", "format": "video/h264-mp4"}, "video/mp4"),
        ({"filename": "a.gif", "format": "image/gif"}, "image/gif"),
        ({"filename": "a.bin", "format": "video/h265-mp4"}, "video/h265-mp4"),
        ({"filename": "a.unknownext"}, "application/octet-stream"),
    ],
)
def test_mime_types(item, expected):
    assert mime_type_of(item) == expected


def test_media_kind_from_mime():
    kinds = [
        OutputFile("1", "f", "", "output", Path("f"), mime).media
        for mime in ("image/png", "video/mp4", "audio/flac", "application/json")
    ]
    assert kinds == ["image", "video", "audio", "file"]


def test_texts_in_history():
    history = {"outputs": {"4": {"text": ["hello", 5]}, "9": {"images": []}}}
    assert texts_in_history(history) == [{"node_id": "4", "text": "hello"}]


def test_urls_are_shown_without_credentials_or_query():
    assert redact("https://user:pw@cdn.example.com/a/b.png?X-Amz-Signature=abc") == "https://cdn.example.com/a/b.png"
