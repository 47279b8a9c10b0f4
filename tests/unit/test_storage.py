import time

import pytest
from boto3.exceptions import S3UploadFailedError

from comfy_worker.errors import StorageError
from comfy_worker.settings import Settings
from comfy_worker.storage import S3Storage, output_store
from tests.support.servers import stalled_server


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

    def upload_file(filename, bucket, key, ExtraArgs=None):  # noqa: N803 - boto3's name
        raise S3UploadFailedError(f"Failed to upload {filename} to {bucket}/{key}: An error occurred (500)")

    store._client.upload_file = upload_file
    with pytest.raises(StorageError) as info:
        store.put(image, "job/a.png", "image/png")
    assert "worker-only-folder" not in info.value.message
    assert info.value.message == (
        "upload of job/a.png to bucket 'outputs' failed: Failed to upload job/a.png to outputs/job/a.png: "
        "An error occurred (500)"
    )
