"""A Hugging Face-compatible file endpoint on 127.0.0.1, enough for hf_hub_download:
HEAD/GET /{repo_id}/resolve/{revision}/{file} (point HF_ENDPOINT at it)."""

from __future__ import annotations

import hashlib
import http.server
from collections.abc import Iterator
from contextlib import contextmanager

from .servers import serving

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?")[0].lstrip("/")
        repo_and_rest = path.split("/resolve/", 1)
        body = None
        if len(repo_and_rest) == 2:
            repo_id, rest = repo_and_rest
            _revision, _, file = rest.partition("/")
            body = self.files.get(f"{repo_id}/{file}")
        if body is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def fake_hub(files: dict[str, bytes]) -> Iterator[str]:
    """Serve files ({"owner/repo/path": bytes}); yields the endpoint URL."""
    with serving(type("Handler", (HubHandler,), {"files": files})) as url:
        yield url
