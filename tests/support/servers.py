"""Loopback servers for the integration tests: an S3-compatible store (moto's
standalone server) and a plain HTTP file server for URL inputs."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
def serving(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run an HTTP server with this request handler on 127.0.0.1; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def stalled_server() -> Iterator[str]:
    """A server that accepts connections and never answers (a stalled bucket, say);
    yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll condition until it is true; fail naming what was awaited."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)


def http_file_server(folder: Path) -> contextlib.AbstractContextManager[str]:
    """Serve folder over HTTP on 127.0.0.1; yields the base URL."""
    return serving(functools.partial(QuietHandler, directory=str(folder)))


class ReplyingHandler(http.server.BaseHTTPRequestHandler):
    """A handler with short replies and no request log, for the tests' own servers."""

    def _send(self, status: int, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def misbehaving_http_server(png: bytes) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 whose paths misbehave as hostile or broken URLs do:
    /png, /redirect-loop, /redirect-ftp, /redirect-no-location, /redirect-bad-port,
    /drip (a body trickling a byte at a time), /missing (404). Query strings are
    echoed into Location headers, as signed URLs' are."""

    class Handler(ReplyingHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            suffix = f"?{query}" if query else ""
            if path == "/png":
                self._send(200, png, "image/png")
            elif path == "/redirect-loop":
                self._redirect(f"/redirect-loop{suffix}")
            elif path == "/redirect-ftp":
                self._redirect(f"ftp://127.0.0.1/file.png{suffix}")
            elif path == "/redirect-bad-port":
                self._redirect(f"http://127.0.0.1:99999/x.png{suffix}")
            elif path == "/redirect-no-location":
                self.send_response(302)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/drip":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _ in range(1000):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass
            else:
                self._send(404, b"missing", "text/plain")

    with serving(Handler) as url:
        yield url


@dataclass
class ModelServer:
    """What `model_server` saw: each request's path and headers."""

    url: str
    requests: list[tuple[str, dict[str, str]]]

    def count(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == path)


@contextmanager
def model_server(
    files: dict[str, bytes], require: dict[str, str] | None = None, delay_s: float = 0.0
) -> Iterator[ModelServer]:
    """Serves `files` (path -> bytes) on 127.0.0.1, counting requests. `require`: headers
    a request must carry (else 401). `/to/<host>/<path>` redirects to that host, same port.
    `delay_s` holds each file response (to overlap two downloads)."""
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(ReplyingHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            seen.append((path, dict(self.headers.items())))
            if path.startswith("/to/"):
                host, _, rest = path.removeprefix("/to/").partition("/")
                return self._redirect(f"http://{host}:{self.server.server_address[1]}/{rest}")  # type: ignore[index]
            if require and any(self.headers.get(name) != value for name, value in require.items()):
                return self._send(401, b"unauthorized")
            if path not in files:
                return self._send(404, b"missing")
            time.sleep(delay_s)
            self._send(200, files[path])

    with serving(Handler) as url:
        yield ModelServer(url, seen)


@dataclass
class WebhookReceiver:
    """What a progress webhook's receiver got: (headers, raw body) per POST, in order.
    `status` and `delay_s` set how it answers (a failing or slow receiver)."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = dataclasses.field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0


@contextmanager
def webhook_receiver(status: int = 200, delay_s: float = 0.0) -> Iterator[WebhookReceiver]:
    """An HTTP server on 127.0.0.1 that records the POSTs it gets."""
    receiver = WebhookReceiver(status=status, delay_s=delay_s)

    class Handler(ReplyingHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(receiver.delay_s)
            receiver.posts.append((dict(self.headers.items()), body))
            with contextlib.suppress(ConnectionError):  # the sender gave up waiting (its timeout)
                self._send(receiver.status, b"ok", "text/plain")

    with serving(Handler) as url:
        receiver.url = f"{url}/hooks/progress"
        yield receiver
