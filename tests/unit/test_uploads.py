"""The client's request fitting: which inputs move to the bucket, in what order, and the
refusals (a recording bucket stands in; test_large_inputs.py runs it for real)."""

from __future__ import annotations

import base64
import json

import pytest

from comfy_worker.core.contract import RUNPOD_REQUEST_LIMITS
from comfy_worker_client.uploads import RequestTooLarge, UploadBucket, decode_inline, fit_request
from tests.support.fake_store import RecordingBucket


def inline(size: int, fill: bytes = b"\x89") -> str:
    return base64.b64encode(fill * size).decode()


def test_a_request_that_fits_is_sent_as_it_is():
    body = {"input": {"workflow": {}, "images": [{"name": "a.png", "image": inline(1000)}]}}
    assert fit_request(body, "/run", None) == (body, [])


def test_the_largest_inputs_move_first_until_the_request_fits():
    bucket = RecordingBucket()
    body = {
        "input": {
            "workflow": {},
            "images": [
                {"name": "small.png", "image": inline(3_000_000)},
                {"name": "large.png", "image": inline(6_000_000)},
                {"name": "linked.png", "image": "https://cdn.example.com/linked.png"},
            ],
        }
    }
    original = json.dumps(body)

    sent, notices = fit_request(body, "/run", bucket)

    assert [name for name, _ in bucket.uploaded] == ["large.png"], "one move was enough"
    assert bucket.uploaded[0][1] == b"\x89" * 6_000_000
    assert sent["input"]["images"][1]["image"].startswith("https://s3.example.com/uploads/large.png")
    assert sent["input"]["images"][0]["image"] == body["input"]["images"][0]["image"]
    assert len(json.dumps(sent)) <= RUNPOD_REQUEST_LIMITS["/run"]
    assert json.dumps(body) == original
    [moved] = notices
    assert (moved.name, moved.size) == ("large.png", 6_000_000)
    assert moved.notice.startswith("large.png (6.0 MB) uploaded to bucket uploads: the request is 12.0 MB")
    # /runsync takes twice as much: the same body goes as it is.
    assert fit_request(body, "/runsync", bucket)[1] == []


def test_a_named_workflows_media_parameters_move_too_and_prompts_stay():
    bucket = RecordingBucket()
    data_uri = "data:image/png;base64," + inline(8_000_000)
    long_prompt = "a lighthouse at dusk, " * 200_000  # 4.4 MB of text: not base64 (it has spaces)
    body = {"input": {"workflow_name": "img2img", "params": {"image": data_uri, "prompt": long_prompt}}}

    sent, _ = fit_request(body, "/run", bucket)

    assert [name for name, _ in bucket.uploaded] == ["image.png"]
    assert sent["input"]["params"]["prompt"] == long_prompt
    assert decode_inline(long_prompt) is None
    assert decode_inline("s3://bucket/" + "k" * 2000) is None


def test_without_a_bucket_or_room_the_request_is_refused_before_sending():
    body = {"input": {"workflow": {}, "images": [{"name": "a.png", "image": inline(9_000_000)}]}}
    with pytest.raises(RequestTooLarge, match=r"the request is 12\.0 MB, over RunPod's limit of 10\.0 MB for /run"):
        fit_request(body, "/run", None)

    huge_workflow = {"input": {"workflow": {"1": {"class_type": "Note", "inputs": {"text": "x " * 6_000_000}}}}}
    with pytest.raises(RequestTooLarge, match="the workflow itself is too large"):
        fit_request(huge_workflow, "/run", RecordingBucket())


def test_the_bucket_is_read_from_the_workers_variables():
    assert UploadBucket.from_env({}) is None
    env = {
        "BUCKET_ENDPOINT_URL": "https://my-bucket.s3.example.com",
        "BUCKET_ACCESS_KEY_ID": "id",
        "BUCKET_SECRET_ACCESS_KEY": "S3CR3T-KEY",
    }
    bucket = UploadBucket.from_env(env)
    assert bucket is not None
    assert bucket.bucket == "my-bucket"
    assert bucket.prefix == ""
    assert "S3CR3T-KEY" not in repr(bucket)
    assert UploadBucket.from_env({**env, "BUCKET_NAME": "named", "BUCKET_PREFIX": "team/"}).bucket == "named"
    with pytest.raises(ValueError, match="BUCKET_SECRET_ACCESS_KEY is not"):
        UploadBucket.from_env({"BUCKET_ENDPOINT_URL": "https://s3.example.com", "BUCKET_ACCESS_KEY_ID": "id"})
