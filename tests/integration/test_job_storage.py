"""A job's own bucket (`storage`) and s3:// inputs, against the real ComfyUI and an
S3-compatible store (moto) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.request

import boto3
import pytest
from PIL import Image

from scripts.dev.make_tiny_checkpoint import CHECKPOINT_NAME
from tests.support.servers import moto_s3
from tests.support.workflows import decode_image, empty_image, load_image

JOB_BUCKET = "job-bucket"
SECRET = "JOB-BUCKET-SECRET-46"


@pytest.fixture(scope="module")
def job_s3():
    with moto_s3() as url:
        client = boto3.client(
            "s3", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        client.create_bucket(Bucket=JOB_BUCKET)
        png = io.BytesIO()
        Image.new("RGB", (8, 8), (12, 34, 56)).save(png, "PNG")
        client.put_object(Bucket=JOB_BUCKET, Key="in/photo.png", Body=png.getvalue())
        yield url, client


def job_storage(endpoint: str, **overrides) -> dict:
    return {
        "endpoint_url": endpoint,
        "bucket": JOB_BUCKET,
        "region": "us-east-1",
        "prefix": "from-job/",
        "access_key_id": "job-key",
        "secret_access_key": SECRET,
        **overrides,
    }


async def test_outputs_go_to_the_jobs_own_bucket(run_job, job_s3, monkeypatch, caplog, clean_after):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")  # the store is on 127.0.0.1
    caplog.set_level(logging.DEBUG)
    endpoint, client = job_s3

    result = await run_job(
        {"workflow": empty_image(color=0x102030), "storage": job_storage(endpoint, url_expiry_s=600)},
        job_id="job-own-bucket",
    )

    [entry] = result["images"]
    assert entry["type"] == "s3_url", result
    stored = client.get_object(Bucket=JOB_BUCKET, Key=f"from-job/job-own-bucket/{entry['filename']}")["Body"].read()
    served = await asyncio.to_thread(lambda: urllib.request.urlopen(entry["data"]).read())
    assert served == stored
    assert Image.open(io.BytesIO(served)).getpixel((0, 0)) == (0x10, 0x20, 0x30)
    assert "X-Amz-Expires=600" in entry["data"]
    assert SECRET not in json.dumps(result)
    assert SECRET not in caplog.text


async def test_an_s3_input_is_read_with_the_jobs_credentials(run_job, job_s3, monkeypatch, clean_after):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    endpoint, _ = job_s3

    result = await run_job(
        {
            "workflow": load_image("photo.png"),
            "images": [{"name": "photo.png", "image": f"s3://{JOB_BUCKET}/in/photo.png"}],
            "storage": job_storage(endpoint),
            "output": {"storage": "base64"},
        }
    )

    assert decode_image(result["images"][0]).getpixel((0, 0)) == (12, 34, 56)

    missing = await run_job(
        {
            "workflow": load_image("photo.png"),
            "images": [{"name": "photo.png", "image": f"s3://{JOB_BUCKET}/in/nope.png"}],
            "storage": job_storage(endpoint),
        }
    )
    assert missing["error_type"] == "invalid_input"
    [problem] = missing["details"]["problems"]
    assert problem["field"] == "input.images[0].image"
    assert f"s3://{JOB_BUCKET}/in/nope.png" in problem["problem"]
    assert "HTTP 404" in problem["problem"]
    assert "X-Amz-Signature" not in missing["error"]


async def test_a_jobs_bucket_on_a_private_address_is_refused(run_job, job_s3, monkeypatch, clean_after):
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    endpoint, _ = job_s3

    result = await run_job({"workflow": empty_image(), "storage": job_storage(endpoint)})

    assert result["error_type"] == "invalid_input"
    [problem] = result["details"]["problems"]
    assert problem["field"] == "input.storage.endpoint_url"
    assert "non-public address 127.0.0.1" in problem["problem"]


async def test_the_workers_own_bucket_on_a_private_address_serves_s3_inputs(
    run_job, use_settings, job_s3, monkeypatch, clean_after
):
    """N15: the endpoint's own bucket (MinIO in the operator's network, say) is the operator's
    choice, not the job's: its s3:// inputs are read without opening private addresses to the
    URLs jobs name, and a job that names the same address as its own bucket is still refused."""
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    endpoint, _ = job_s3
    use_settings(
        BUCKET_ENDPOINT_URL=endpoint, BUCKET_NAME=JOB_BUCKET, BUCKET_ACCESS_KEY_ID="k", BUCKET_SECRET_ACCESS_KEY="s",
        BUCKET_REGION="us-east-1",
    )  # fmt: skip
    photo = {"name": "photo.png", "image": f"s3://{JOB_BUCKET}/in/photo.png"}

    result = await run_job({"workflow": load_image("photo.png"), "images": [photo], "output": {"storage": "base64"}})
    assert "error" not in result, result
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (12, 34, 56)

    by_url = await run_job({"workflow": load_image("photo.png"), "images": [{**photo, "image": f"{endpoint}/x.png"}]})
    assert by_url["error_type"] == "invalid_input"
    assert "non-public address" in by_url["error"]
    as_own = await run_job({"workflow": empty_image(), "storage": job_storage(endpoint)})
    assert [p["field"] for p in as_own["details"]["problems"]] == ["input.storage.endpoint_url"]


async def test_an_incomplete_storage_and_an_s3_input_without_credentials_are_named(run_job, clean_after):
    incomplete = await run_job(
        {"workflow": empty_image(), "storage": {"endpoint_url": "https://s3.example.com", "bucket": "b"}}
    )
    fields = {problem["field"] for problem in incomplete["details"]["problems"]}
    assert fields == {"input.storage.access_key_id", "input.storage.secret_access_key"}

    no_bucket = await run_job(
        {"workflow": load_image("x.png"), "images": [{"name": "x.png", "image": "s3://somewhere/x.png"}]}
    )
    assert no_bucket["error_type"] == "invalid_input"
    assert "input.images[0].image" in no_bucket["error"]
    assert "'storage'" in no_bucket["error"]


async def test_a_named_workflows_image_parameter_takes_an_s3_reference(run_job, job_s3, monkeypatch, clean_after):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    endpoint, _ = job_s3
    params = {"image": f"s3://{JOB_BUCKET}/in/photo.png", "checkpoint": CHECKPOINT_NAME, "steps": 1, "strength": 0.2}

    job = {"workflow_name": "img2img", "params": params, "storage": job_storage(endpoint)}
    result = await run_job({**job, "output": {"storage": "base64"}})

    assert "error" not in result, result
    assert result["images"][0]["type"] == "base64"
    assert decode_image(result["images"][0]).size == (8, 8)
