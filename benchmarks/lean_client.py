"""The leanest ComfyUI client we could write, in the standard library only: the
baseline the worker's per-job overhead is measured against (job_overhead.py), and
the client of the GPU check, where the worker's own dependencies are not installed.

One keep-alive HTTP connection for every request; a new websocket per job (a raw
socket and the RFC 6455 handshake; the server's frames are not masked); POST
/prompt, wait for the prompt's end event, GET /history, GET /view for the image.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import struct
import uuid
from typing import Any


class LeanClient:
    """A minimal ComfyUI client: one HTTP connection kept open, one websocket per job."""

    def __init__(self, host: str):
        self.host = host
        self.http = http.client.HTTPConnection(host)

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        payload = json.dumps(body).encode() if body is not None else None
        self.http.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        return json.loads(self.http.getresponse().read())

    def _websocket(self, client_id: str) -> socket.socket:
        address, port = self.host.rsplit(":", 1)
        sock = socket.create_connection((address, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += sock.recv(4096)
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        return sock

    def _read(self, sock: socket.socket, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _frame(self, sock: socket.socket) -> tuple[int, bytes]:
        first, second = self._read(sock, 2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(sock, 2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(sock, 8))[0]
        return first & 0x0F, self._read(sock, length)  # the server's frames are not masked

    def run(self, workflow: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        client_id = uuid.uuid4().hex
        sock = self._websocket(client_id)
        try:
            prompt_id = self._json("POST", "/prompt", {"prompt": workflow, "client_id": client_id})["prompt_id"]
            while True:
                opcode, payload = self._frame(sock)
                if opcode != 1:  # text frames only; previews are binary
                    continue
                event = json.loads(payload)
                data = event.get("data") or {}
                if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break
        finally:
            sock.close()
        history = self._json("GET", f"/history/{prompt_id}")[prompt_id]
        image = next(iter(history["outputs"].values()))["images"][0]
        query = "&".join(f"{key}={image[key]}" for key in ("filename", "subfolder", "type"))
        self.http.request("GET", f"/view?{query}")
        return self.http.getresponse().read(), history


def comfy_execution_s(history: dict[str, Any]) -> float:
    """ComfyUI's own execution time of a prompt: execution_start -> execution_success (ms stamps)."""
    stamps = {name: data["timestamp"] for name, data in history["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000
