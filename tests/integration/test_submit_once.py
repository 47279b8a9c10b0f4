"""Submit once, end to end: a client whose /run answer is lost sends the job again with its
idempotency key, and the real ComfyUI runs it once; the result outlives the job, by key."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import urlparse

import boto3
from PIL import Image

from comfy_worker_client import AsyncEndpoint
from tests.integration.conftest import UPLOAD_BUCKET
from tests.support.fault_proxy import FaultProxy
from tests.support.local_endpoint import API_KEY, run_cli
from tests.support.workflows import decode_image, empty_image, txt2img


async def test_a_submit_retried_after_a_timeout_runs_one_job(bucket_endpoint, tmp_path):
    base_url, env = bucket_endpoint
    proxy = await FaultProxy.start(urlparse(base_url).netloc)
    proxy.answers_to_hold = 1  # the first /run reaches the endpoint; its answer never comes back
    endpoint = AsyncEndpoint(f"http://{proxy.host}/v2/local", API_KEY, request_timeout_s=3)
    endpoint.submit_retry_s = 0.1
    key = f"order-{uuid.uuid4().hex[:8]}"
    try:
        job_id = await endpoint.run({"workflow": txt2img(steps=3, size=64, seed=5), "idempotency_key": key})
        final = await endpoint.wait(job_id, poll_interval_s=0.1)
        first_id = json.loads(b"".join(proxy.held).split(b"\r\n\r\n", 1)[1])["id"]
        first = await endpoint.wait(first_id, poll_interval_s=0.1)
    finally:
        await endpoint.close()
        await proxy.close()

    assert first_id != job_id, "the client sent the job twice: two jobs were made"
    assert "repeat_of" not in first["output"]
    assert final["output"]["repeat_of"] == first_id
    [ran], [repeated] = first["output"]["images"], final["output"]["images"]
    assert repeated["filename"] == ran["filename"]
    assert final["output"]["seeds"] == first["output"]["seeds"]
    s3 = boto3.client(
        "s3",
        endpoint_url=env["BUCKET_ENDPOINT_URL"],
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    )
    stored = [item["Key"] for item in s3.list_objects_v2(Bucket=UPLOAD_BUCKET).get("Contents", [])]
    assert f"{first_id}/{ran['filename']}" in stored
    assert not [name for name in stored if name.startswith(f"{job_id}/")], "the second job stored no outputs"
    assert f"/{first_id}/" in urlparse(repeated["data"]).path

    # Later (past RunPod's 30 minutes too, while the bucket keeps it), by key from the command line.
    fetched = await asyncio.to_thread(run_cli, base_url, "result", key, "--out", str(tmp_path / "out"))
    assert fetched.returncode == 0, fetched.stderr
    [saved] = fetched.stdout.split()
    assert Image.open(saved).size == (64, 64)


async def test_the_same_key_with_another_input_is_refused_and_an_unknown_key_found_nowhere(bucket_endpoint):
    endpoint = AsyncEndpoint(bucket_endpoint[0], API_KEY)
    key = f"order-{uuid.uuid4().hex[:8]}"
    try:
        inline = {"storage": "base64"}
        first = await endpoint.wait(
            await endpoint.run({"workflow": empty_image(color=0x010203), "output": inline, "idempotency_key": key})
        )
        other = await endpoint.wait(
            await endpoint.run({"workflow": empty_image(color=0x040506), "output": inline, "idempotency_key": key}),
            raise_failed=False,
        )
        unknown = await endpoint.wait(await endpoint.run({"result_of": "never-sent"}), raise_failed=False)
    finally:
        await endpoint.close()

    assert decode_image(first["output"]["images"][0]).getpixel((0, 0))[:3] == (1, 2, 3)
    assert other["status"] == "FAILED"
    assert other["output"]["details"]["problems"][0]["field"] == "input.idempotency_key"
    assert unknown["output"]["error_type"] == "unknown_submit"
    assert f"bucket '{UPLOAD_BUCKET}'" in unknown["error"]  # RunPod moves the message out of the output
