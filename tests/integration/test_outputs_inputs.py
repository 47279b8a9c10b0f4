"""Outputs and inputs at production size, on a real ComfyUI with real loopback servers:
every output type, formats, S3-compatible storage, the size guard, URL inputs, names."""

from __future__ import annotations

import asyncio
import base64
import io
import urllib.request

import boto3
import pytest
from PIL import Image

from tests.support.servers import http_file_server, moto_s3
from tests.support.workflows import decode_image, empty_image, load_image, png_base64

BUCKET = "outputs"


def two_frames() -> dict:
    """Nodes 10-12: a batch of two different 16x16 frames (identical frames may be merged by encoders)."""

    def frame(color: int) -> dict:
        return {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color}}

    return {
        "10": frame(0x3366CC),
        "11": frame(0xCC6633),
        "12": {"class_type": "ImageBatch", "inputs": {"image1": ["10", 0], "image2": ["11", 0]}},
    }


def animated_webp_workflow() -> dict:
    return {
        **two_frames(),
        "2": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["12", 0],
                "filename_prefix": "anim",
                "fps": 6.0,
                "lossless": True,
                "quality": 80,
                "method": "fastest",
            },
        },
    }


def webm_workflow() -> dict:
    return {
        **two_frames(),
        "2": {
            "class_type": "SaveWEBM",
            "inputs": {"images": ["12", 0], "filename_prefix": "clip", "codec": "vp9", "fps": 6.0, "crf": 32.0},
        },
    }


def preview_and_text_workflow() -> dict:
    return {
        **empty_image(color=0x112233),
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3() as url:
        boto3.client(
            "s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        ).create_bucket(Bucket=BUCKET)
        yield url


def bucket_env(endpoint: str, secret: str = "s3cr3t-value") -> dict[str, str]:
    return {
        "BUCKET_ENDPOINT_URL": endpoint,
        "BUCKET_ACCESS_KEY_ID": "test",
        "BUCKET_SECRET_ACCESS_KEY": secret,
        "BUCKET_NAME": BUCKET,
        "BUCKET_PREFIX": "jobs/",
        "BUCKET_REGION": "us-east-1",
    }


# -- output types -------------------------------------------------------------------


async def test_animated_webp_comes_back_with_its_mime_type(run_job, clean_after):
    result = await run_job({"workflow": animated_webp_workflow()})

    [entry] = result["images"]
    assert (entry["mime_type"], entry["media"], entry["animated"]) == ("image/webp", "image", True)
    image = decode_image(entry)
    assert image.format == "WEBP"
    assert image.n_frames == 2


async def test_webm_video_comes_back_as_a_video(run_job, clean_after):
    result = await run_job({"workflow": webm_workflow()})

    assert result["images"] == []
    [entry] = result["videos"]
    assert (entry["mime_type"], entry["media"], entry["node_id"]) == ("video/webm", "video", "2")
    assert entry["filename"].endswith(".webm")
    assert base64.b64decode(entry["data"])[:4] == b"\x1a\x45\xdf\xa3"  # EBML (Matroska/WebM) header


async def test_previews_only_on_request_and_text_outputs(run_job, clean_after):
    plain = await run_job({"workflow": preview_and_text_workflow()})
    assert [e["node_id"] for e in plain["images"]] == ["2"]
    assert plain["text"][0]["node_id"] == "4"
    assert plain["text"][0]["text"]

    with_previews = await run_job({"workflow": preview_and_text_workflow(), "output": {"include_previews": True}})
    assert sorted(e["node_id"] for e in with_previews["images"]) == ["2", "3"]


@pytest.mark.parametrize(
    "fmt, pil_format, suffix, mime",
    [
        ("webp", "WEBP", ".webp", "image/webp"),
        ("jpeg", "JPEG", ".jpg", "image/jpeg"),
    ],
)
async def test_still_images_are_converted(run_job, clean_after, fmt, pil_format, suffix, mime):
    result = await run_job({"workflow": empty_image(color=0xC08040, size=32), "output": {"format": fmt, "quality": 95}})

    [entry] = result["images"]
    assert entry["filename"].endswith(suffix)
    assert entry["mime_type"] == mime
    image = decode_image(entry)
    assert image.format == pil_format
    assert all(abs(a - b) <= 4 for a, b in zip(image.convert("RGB").getpixel((5, 5)), (0xC0, 0x80, 0x40), strict=True))


async def test_animated_images_are_not_flattened_by_conversion(run_job, clean_after):
    result = await run_job({"workflow": animated_webp_workflow(), "output": {"format": "jpeg"}})

    assert result["images"][0]["mime_type"] == "image/webp"


# -- storage and the size guard -----------------------------------------------------


async def test_outputs_go_to_the_bucket_and_the_url_serves_the_same_bytes(
    run_job, use_settings, s3_endpoint, clean_after
):
    use_settings(**bucket_env(s3_endpoint))

    result = await run_job({"workflow": empty_image(color=0x445566)}, job_id="job-s3")

    [entry] = result["images"]
    assert entry["type"] == "s3_url"
    assert entry["mime_type"] == "image/png"
    served = await asyncio.to_thread(lambda: urllib.request.urlopen(entry["data"]).read())
    stored = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).get_object(Bucket=BUCKET, Key=f"jobs/job-s3/{entry['filename']}")
    assert served == stored["Body"].read()
    assert Image.open(io.BytesIO(served)).getpixel((0, 0)) == (0x44, 0x55, 0x66)


async def test_wrong_credentials_give_a_clear_error_without_the_secret(run_job, use_settings, clean_after):
    with moto_s3(require_auth=True) as strict_endpoint:
        use_settings(**bucket_env(strict_endpoint, secret="do-not-leak-me"))
        result = await run_job({"workflow": empty_image()})

    assert result["error_type"] == "storage_error"
    assert f"to bucket '{BUCKET}' failed: the access key id is not known to the bucket's service" in result["error"]
    assert "do-not-leak-me" not in repr(result)


async def test_s3_asked_without_a_bucket_is_an_input_error(run_job, clean_after):
    result = await run_job({"workflow": empty_image(), "output": {"storage": "s3"}})

    assert result["error_type"] == "invalid_input"
    assert "input.output.storage" in result["error"]


async def test_result_over_the_limit_goes_to_the_bucket(run_job, use_settings, s3_endpoint, clean_after):
    use_settings(**bucket_env(s3_endpoint), MAX_RESPONSE_BYTES="1000")

    small = await run_job({"workflow": empty_image(size=8), "output": {"storage": "base64"}})
    large = await run_job({"workflow": empty_image(size=512), "output": {"storage": "base64"}})

    assert small["images"][0]["type"] == "base64"
    assert large["images"][0]["type"] == "s3_url"


async def test_result_over_the_limit_without_a_bucket_fails_with_the_ways_out(run_job, use_settings, clean_after):
    use_settings(MAX_RESPONSE_BYTES="1000")

    result = await run_job({"workflow": empty_image(size=512)})

    assert result["error_type"] == "output_too_large"
    assert result["details"]["limit_bytes"] == 1000
    assert result["details"]["size_bytes"] > 1000
    assert "MAX_RESPONSE_BYTES" in result["error"]
    assert "BUCKET_ENDPOINT_URL" in result["error"]
    assert '"format": "webp"' in result["error"]


# -- inputs -------------------------------------------------------------------------


@pytest.fixture
def served_png(tmp_path):
    Image.new("RGB", (8, 8), (9, 99, 199)).save(tmp_path / "in.png")
    with http_file_server(tmp_path) as base_url:
        yield base_url


async def test_url_input_is_fetched_when_private_addresses_are_allowed(run_job, served_png, monkeypatch, clean_after):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")

    result = await run_job(
        {"workflow": load_image("in.png"), "images": [{"name": "in.png", "image": f"{served_png}/in.png"}]}
    )

    assert decode_image(result["images"][0]).getpixel((0, 0)) == (9, 99, 199)


async def test_url_to_a_private_address_is_refused_by_default(run_job, served_png, monkeypatch, clean_after):
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)

    result = await run_job(
        {"workflow": load_image("in.png"), "images": [{"name": "in.png", "image": f"{served_png}/in.png?token=secret"}]}
    )

    assert result["error_type"] == "invalid_input"
    [problem] = result["details"]["problems"]
    assert problem["field"] == "input.images[0].image"
    assert "refused" in problem["problem"]
    assert "non-public address 127.0.0.1" in problem["problem"]
    assert "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS" in problem["problem"]
    assert "token=secret" not in result["error"]


async def test_url_errors_and_size_cap(run_job, use_settings, served_png, monkeypatch, clean_after):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    missing = await run_job(
        {"workflow": load_image("x.png"), "images": [{"name": "x.png", "image": f"{served_png}/nope.png"}]}
    )
    assert "HTTP 404" in missing["error"]

    use_settings(INPUT_MAX_BYTES="10")
    too_big = await run_job(
        {"workflow": load_image("x.png"), "images": [{"name": "x.png", "image": f"{served_png}/in.png"}]}
    )
    assert "is larger than 10 bytes (INPUT_MAX_BYTES)" in too_big["error"]


async def test_input_in_a_subfolder_is_loaded_and_removed(run_job, comfyui, clean_after):
    job = {
        "workflow": load_image("batch7/red.png"),
        "images": [{"name": "red.png", "subfolder": "batch7", "image": png_base64((250, 0, 0))}],
    }

    result = await run_job(job)

    assert decode_image(result["images"][0]).getpixel((0, 0)) == (250, 0, 0)
    assert not (comfyui.base_dir / "input" / "batch7").exists()


@pytest.mark.parametrize(
    "name, subfolder",
    [
        ("../evil.png", ""),
        ("/tmp/evil.png", ""),
        ("evil.png", "../.."),
        ("evil.png", "/etc"),
        ("evil.png", "a/../../b"),
    ],
)
async def test_path_traversal_is_refused_and_nothing_is_written(run_job, comfyui, clean_after, name, subfolder):
    result = await run_job(
        {
            "workflow": load_image("evil.png"),
            "images": [{"name": name, "subfolder": subfolder, "image": png_base64((1, 2, 3))}],
        }
    )

    assert result["error_type"] == "invalid_input"
    assert {"input.images[0].name", "input.images[0].subfolder"} & {p["field"] for p in result["details"]["problems"]}
    assert not list(comfyui.base_dir.rglob("evil.png"))  # not in input/ nor anywhere in ComfyUI's folders
    assert not (comfyui.base_dir.parent / "evil.png").exists()
