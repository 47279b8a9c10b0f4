"""Loopback servers for the integration tests: an S3-compatible store (moto's
standalone server) and a plain HTTP file server for URL inputs."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .comfyui_server import LOCAL_DIR, free_port


@contextmanager
def moto_s3(require_auth: bool = False) -> Iterator[str]:
    """Yield the endpoint URL of a moto S3 server on 127.0.0.1. With require_auth,
    every request must be signed by a known access key (none exist), so any
    credentials are wrong."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0" if require_auth else "inf"}
    process = subprocess.Popen(
        [str(LOCAL_DIR / "venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def http_file_server(folder: Path) -> Iterator[str]:
    """Serve folder over HTTP on 127.0.0.1; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass
