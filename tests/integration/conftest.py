"""Local endpoints with a worker, on the shared ComfyUI, for the tests that drive it from
outside (one plain, one with a bucket), and a headless Chromium for the page tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import boto3
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from comfy_worker_client import EndpointClient
from tests.support.local_endpoint import API_KEY, running_endpoint
from tests.support.servers import moto_s3
from tests.support.tools import missing


@pytest.fixture(scope="session")
def endpoint(comfyui, tmp_path_factory):
    """(base URL, log file) of the local endpoint; clients need API_KEY."""
    log_file = tmp_path_factory.mktemp("endpoint") / "endpoint.log"
    with running_endpoint(comfyui.env(), log_file) as base_url:
        yield base_url, log_file


@pytest.fixture
def client(endpoint) -> Iterator[EndpointClient]:
    with EndpointClient(endpoint[0], API_KEY) as client:
        yield client


UPLOAD_BUCKET = "uploads"


@pytest.fixture(scope="session")
def bucket_endpoint(comfyui, tmp_path_factory):
    """(base URL, environment) of a second local endpoint and worker with a bucket (moto):
    inputs over RunPod's request limit go through it, and so do the outputs."""
    with moto_s3() as s3_url:
        env = {
            **comfyui.env(),
            "BUCKET_ENDPOINT_URL": s3_url,
            "BUCKET_ACCESS_KEY_ID": "key-id",
            "BUCKET_SECRET_ACCESS_KEY": "key-secret",
            "BUCKET_NAME": UPLOAD_BUCKET,
            "BUCKET_REGION": "us-east-1",
            "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS": "true",  # the bucket is on 127.0.0.1
        }
        boto3.client(
            "s3", endpoint_url=s3_url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        ).create_bucket(Bucket=UPLOAD_BUCKET)
        log_file = tmp_path_factory.mktemp("bucket-endpoint") / "endpoint.log"
        with running_endpoint(env, log_file) as base_url:
            yield base_url, env


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Selenium (the jobs page, the editor extension)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        missing("chromium or chromedriver")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()
