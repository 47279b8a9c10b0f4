"""Inputs beyond RunPod's request limit, through the local endpoint and a real worker:
the endpoint refuses what RunPod would (10 MB on /run, 20 MB on /runsync); the client
(Python API and command line) uploads large inputs to its bucket and sends presigned
URLs, or refuses before sending when it has no bucket. The page's side is in test_page.py."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess

import pytest
import requests
from PIL import Image

from comfy_worker_client import EndpointClient, RequestTooLarge, UploadBucket
from tests.support.comfyui_server import PYTHON
from tests.support.local_endpoint import API_KEY
from tests.support.workflows import REPO_ROOT, large_png, scaled_image

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CORNER = (0x11, 0x22, 0x33)


@pytest.fixture(scope="module")
def big_png() -> bytes:
    return large_png(CORNER)


def health(base_url: str) -> dict:
    return requests.get(f"{base_url}/health", headers=AUTH, timeout=5).json()["jobs"]


def test_the_local_endpoint_refuses_what_runpod_would(endpoint):
    base_url = endpoint[0]
    padding = "x" * 10_500_000  # between the /run and the /runsync limit
    body = {"input": {"list": "models", "padding": padding}}

    too_large = requests.post(f"{base_url}/run", json=body, headers=AUTH, timeout=30)
    assert too_large.status_code == 413
    assert "the request is 10.5 MB, over RunPod's limit of 10.0 MB for /run" in too_large.json()["error"]

    accepted = requests.post(f"{base_url}/runsync?wait=60000", json=body, headers=AUTH, timeout=90)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "FAILED", "the worker saw it"
    assert "input.padding" in json.dumps(accepted.json()), "the worker saw it"


def test_without_a_bucket_the_client_refuses_before_sending(endpoint, big_png):
    client = EndpointClient(endpoint[0], API_KEY)
    before = health(endpoint[0])
    job_input = {
        "workflow": scaled_image("big.png"),
        "images": [{"name": "big.png", "image": base64.b64encode(big_png).decode()}],
    }

    with pytest.raises(RequestTooLarge) as refused:
        client.run(job_input)

    size_mb = f"{len(json.dumps({'input': job_input})) / 1e6:.1f} MB"
    assert f"the request is {size_mb}, over RunPod's limit of 10.0 MB for /run" in str(refused.value)
    assert "BUCKET_ENDPOINT_URL" in str(refused.value)
    # Nothing was sent: no count rose (one may fall meanwhile, as an earlier job's result expires).
    after = health(endpoint[0])
    assert {state: count for state, count in after.items() if count > before.get(state, 0)} == {}, (before, after)


def test_the_client_sends_large_inputs_through_its_bucket(bucket_endpoint, big_png, caplog):
    caplog.set_level(logging.INFO, logger="client")
    base_url, env = bucket_endpoint
    client = EndpointClient(base_url, API_KEY, bucket=UploadBucket.from_env(env))
    encoded = base64.b64encode(big_png).decode()
    job_input = {"workflow": scaled_image("big.png"), "images": [{"name": "big.png", "image": encoded}]}

    final = client.wait(client.run(job_input), poll_interval_s=0.2)

    [entry] = final["output"]["images"]
    assert entry["type"] == "s3_url", entry  # the worker's bucket took the output too
    scaled = Image.open(io.BytesIO(requests.get(entry["data"], timeout=30).content))
    assert scaled.size == (16, 16)
    assert scaled.getpixel((0, 0)) == CORNER
    assert f"big.png ({len(big_png) / 1e6:.1f} MB) uploaded to bucket uploads" in caplog.text
    assert job_input["images"][0]["image"] == encoded, "the caller's input is left as it was"


def test_the_command_line_says_what_it_uploads_or_why_it_refuses(endpoint, bucket_endpoint, big_png, tmp_path):
    (tmp_path / "big.png").write_bytes(big_png)
    (tmp_path / "job.json").write_text(json.dumps({"input": {"workflow": scaled_image("big.png")}}))
    command = [
        str(PYTHON),
        "-m",
        "comfy_worker_client",
        "run",
        str(tmp_path / "job.json"),
        "--image",
        str(tmp_path / "big.png"),
    ]
    command += ["--api-key", API_KEY, "--out", str(tmp_path / "out")]
    plain_env = {key: value for key, value in os.environ.items() if not key.startswith("BUCKET_")}

    def run(base_url: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, "--base-url", base_url], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
        )

    refused = run(endpoint[0], plain_env)
    assert refused.returncode == 2, refused.stderr
    assert "not sent: the request is" in refused.stderr
    assert "over RunPod's limit of 10.0 MB for /run" in refused.stderr

    bucket_env = {key: value for key, value in bucket_endpoint[1].items() if key.startswith("BUCKET_")}
    sent = run(bucket_endpoint[0], {**plain_env, **bucket_env})
    assert sent.returncode == 0, sent.stderr
    assert "big.png (" in sent.stderr
    assert "uploaded to bucket uploads" in sent.stderr
    [saved] = sent.stdout.split()
    assert Image.open(saved).getpixel((0, 0)) == CORNER
