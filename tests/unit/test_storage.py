import http.server
import socket
import time
import urllib.request

import boto3
import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from comfy_worker.core.errors import StorageError
from comfy_worker.core.settings import Settings
from comfy_worker.request.job_input import JobStorage
from comfy_worker.transfer.storage import S3Storage, output_store
from tests.support.servers import moto_s3, serving, stalled_server


@pytest.fixture
def stalled_endpoint():
    """A server that accepts connections and never answers."""
    with stalled_server() as url:
        yield url


def test_a_stalled_store_fails_in_bounded_time_without_the_secret(stalled_endpoint, tmp_path):
    settings = Settings.from_env(
        {
            "BUCKET_ENDPOINT_URL": stalled_endpoint,
            "BUCKET_NAME": "outputs",
            "BUCKET_ACCESS_KEY_ID": "id",
            "BUCKET_SECRET_ACCESS_KEY": "do-not-leak",
            "BUCKET_TIMEOUT_S": "0.5",
        }
    )
    store = output_store(settings)
    assert isinstance(store, S3Storage)
    image = tmp_path / "a.png"
    image.write_bytes(b"x" * 100)

    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        store.put(image, "job/a.png", "image/png")

    assert time.monotonic() - started < 6
    assert info.value.details == {"bucket": "outputs", "key": "job/a.png"}
    assert "do-not-leak" not in info.value.message


def test_no_bucket_no_store():
    assert output_store(Settings()) is None


def test_issue20_6_a_storage_error_does_not_show_the_workers_path(tmp_path):
    """boto3's upload error names the local file; the job's error names the output instead."""
    store = S3Storage.from_settings(
        Settings.from_env(
            {
                "BUCKET_ENDPOINT_URL": "http://127.0.0.1:9",
                "BUCKET_NAME": "outputs",
                "BUCKET_ACCESS_KEY_ID": "id",
                "BUCKET_SECRET_ACCESS_KEY": "s",
            }
        )
    )
    image = tmp_path / "worker-only-folder" / "a.png"
    image.parent.mkdir()
    image.write_bytes(b"x")

    def upload_file(filename, bucket, key, ExtraArgs=None):
        raise S3UploadFailedError(f"Failed to upload {filename} to {bucket}/{key}: An error occurred (500)")

    store._client.upload_file = upload_file
    with pytest.raises(StorageError) as info:
        store.put(image, "job/a.png", "image/png")
    assert "worker-only-folder" not in info.value.message
    assert (
        info.value.message == "upload of job/a.png to bucket 'outputs' failed: the bucket's service refused the upload"
    )


def job_bucket(endpoint_url: str) -> S3Storage:
    storage = JobStorage.model_validate(
        {"endpoint_url": endpoint_url, "bucket": "job-bucket", "access_key_id": "k", "secret_access_key": "s"}
    )
    return S3Storage.for_job(storage, Settings.from_env({"BUCKET_TIMEOUT_S": "2"}))


def test_n4_a_jobs_bucket_whose_name_rebinds_to_a_private_address_gets_nothing(tmp_path, monkeypatch):
    """The job's endpoint resolves to a public address when it is checked, to 127.0.0.1 after:
    the upload must not reach 127.0.0.1 (every connection is checked and pinned)."""
    received: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            received.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["8.8.8.8"])  # a public answer once (never connected to), then loopback

    def rebinding(host, port, *args, **kwargs):
        if host != "bucket.rebind.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        address = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    image = tmp_path / "a.png"
    image.write_bytes(b"x" * 100)
    with serving(Recorder) as url:
        store = job_bucket(f"http://bucket.rebind.test:{url.rsplit(':', 1)[1]}")
        with pytest.raises(StorageError) as info:
            store.put(image, "job/a.png", "image/png")
    assert received == []
    assert info.value.message.endswith("the bucket's endpoint resolves to a non-public address")


def test_n4_a_jobs_bucket_is_reached_at_its_checked_address_when_allowed(tmp_path, monkeypatch):
    """The pinned connection still works (TLS and Host unchanged): a job's bucket on 127.0.0.1
    with private addresses allowed, by the name the job gave."""
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    with moto_s3() as url:
        boto3.client("s3", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s",
                     region_name="us-east-1").create_bucket(Bucket="job-bucket")  # fmt: skip
        store = job_bucket(url.replace("127.0.0.1", "localhost"))
        image = tmp_path / "a.png"
        image.write_bytes(b"pinned")
        served = store.put(image, "job/a.png", "image/png")
        assert urllib.request.urlopen(served).read() == b"pinned"


def unchecked_bucket(endpoint_url: str) -> S3Storage:
    """A store as a job's is made, without resolving its name."""
    return S3Storage(endpoint_url=endpoint_url, bucket="job-bucket", prefix="", access_key_id="k",
                     secret_access_key="s", region=None, url_expiry_s=60, timeout_s=2)  # fmt: skip


def test_n4_a_bucket_refusal_says_what_to_do_not_the_services_own_text(tmp_path):
    store = unchecked_bucket("https://s3.example.com")
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    for code, status, expected in (
        ("AccessDenied", 403, "access denied: the keys may not write to this bucket"),
        ("SomethingNew", 418, "the bucket's service refused it (HTTP 418)"),
    ):
        error = ClientError(
            {
                "Error": {"Code": code, "Message": "<a href=http://evil>click</a>"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "PutObject",
        )

        def upload_file(filename, bucket, key, ExtraArgs=None, error=error):
            raise error

        store._client.upload_file = upload_file
        with pytest.raises(StorageError) as info:
            store.put(image, "job/a.png", "image/png")
        assert info.value.message == f"upload of job/a.png to bucket 'job-bucket' failed: {expected}"


def test_n15_only_the_operators_bucket_may_be_on_a_private_address():
    own = S3Storage.from_settings(Settings.from_env({"BUCKET_ENDPOINT_URL": "http://minio.internal:9000",
                                                     "BUCKET_NAME": "b"}))  # fmt: skip
    assert own.private_origin == "http://minio.internal:9000"
    assert unchecked_bucket("https://s3.example.com").private_origin is None


def test_submit_records_are_created_once_read_replaced_and_removed():
    """The bucket as a `submits.Shelf`, against an S3-compatible store (moto)."""
    with moto_s3() as url:
        client = boto3.client(
            "s3", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        client.create_bucket(Bucket="job-bucket")
        store = unchecked_bucket(url)
        store.prefix = "outputs/"

        assert store.read_object("submits/a.json") is None
        assert store.create_object("submits/a.json", b'{"n": 1}') is True
        assert store.create_object("submits/a.json", b'{"n": 2}') is False  # If-None-Match: the first stays
        assert store.read_object("submits/a.json") == b'{"n": 1}'
        store.write_object("submits/a.json", b'{"n": 3}')
        assert client.get_object(Bucket="job-bucket", Key="outputs/submits/a.json")["Body"].read() == b'{"n": 3}'
        store.delete_object("submits/a.json")
        assert store.read_object("submits/a.json") is None
        assert store.url_for("job/a.png").startswith(f"{url}/job-bucket/outputs/job/a.png?")


def test_a_record_in_a_missing_bucket_is_a_storage_error_naming_it():
    with moto_s3() as url:
        store = unchecked_bucket(url)

        with pytest.raises(StorageError) as raised:
            store.create_object("submits/a.json", b"{}")

    assert raised.value.message == "submits/a.json in bucket 'job-bucket': no such bucket at this endpoint"
