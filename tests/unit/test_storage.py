import socket
import threading
import time

import pytest

from comfy_worker.errors import StorageError
from comfy_worker.settings import Settings
from comfy_worker.storage import S3Storage, output_store


@pytest.fixture
def stalled_endpoint():
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


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
