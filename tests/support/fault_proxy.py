"""A loopback TCP proxy between the worker and ComfyUI that injects faults on command.

    proxy = await FaultProxy.start("127.0.0.1:8188")   # the worker's COMFY_HOST is proxy.host
    proxy.cut(websockets_only=True)   # close connections now (the websocket, or everything)
    proxy.frozen = True               # stop forwarding, keep connections open (a half-open socket)
    proxy.frozen_websockets = True    # the same, for the websocket only
    proxy.delay_s = 0.05              # delay every chunk, both ways
    proxy.inject("POST", "/prompt", 500, b"boom", times=1)   # answer instead of ComfyUI
    proxy.answers_to_hold = 1         # the next connection's answer is read, kept in `held`, never sent

It works on raw bytes, so the websocket and HTTP keep-alive pass through untouched.
An injected answer is recognised by the request line at the start of a chunk from
the worker (aiohttp writes a request's head in one piece), answered with
`Connection: close`, and the connection closed: good enough for tests, not a
general HTTP parser.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class Injection:
    method: str
    path: str
    status: int
    body: bytes
    times: int | None  # None: every time


class FaultProxy:
    def __init__(self, target: str):
        self.target_host, _, port = target.rpartition(":")
        self.target_port = int(port)
        self.frozen = False
        self.frozen_websockets = False
        self.delay_s = 0.0
        self.injections: list[Injection] = []
        self.injected = 0
        self.answers_to_hold = 0
        self.held: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._connections: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, bool]] = []
        self.host = ""

    @classmethod
    async def start(cls, target: str) -> FaultProxy:
        proxy = cls(target)
        proxy._server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
        proxy.host = f"127.0.0.1:{proxy._server.sockets[0].getsockname()[1]}"
        return proxy

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def inject(self, method: str, path: str, status: int, body: bytes = b"", times: int | None = None) -> None:
        self.injections.append(Injection(method, path, status, body, times))

    def clear(self) -> None:
        self.injections.clear()
        self.frozen = self.frozen_websockets = False
        self.delay_s = 0.0

    def cut(self, websockets_only: bool = False) -> None:
        for client, upstream, is_websocket in list(self._connections):
            if is_websocket or not websockets_only:
                client.close()
                upstream.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            return
        first = await client_reader.read(65536)
        is_websocket = first.startswith(b"GET /ws")
        hold = self.answers_to_hold > 0
        self.answers_to_hold -= hold
        entry = (client_writer, upstream_writer, is_websocket)
        self._connections.append(entry)
        try:
            if not await self._answer_instead(first, client_writer):
                upstream_writer.write(first)
                await asyncio.gather(
                    self._pump(client_reader, upstream_writer, client_writer, is_websocket),
                    self._pump(upstream_reader, client_writer, None, is_websocket, hold),
                )
        finally:
            self._connections.remove(entry)
            for writer in (client_writer, upstream_writer):
                writer.close()

    async def _answer_instead(self, chunk: bytes, client_writer: asyncio.StreamWriter) -> bool:
        request_line = chunk.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        path = rest.split(" ", 1)[0]
        for injection in self.injections:
            if injection.method == method and path.startswith(injection.path) and injection.times != 0:
                if injection.times is not None:
                    injection.times -= 1
                self.injected += 1
                head = (
                    f"HTTP/1.1 {injection.status} Injected\r\nContent-Length: {len(injection.body)}\r\n"
                    "Content-Type: application/json\r\nConnection: close\r\n\r\n"
                )
                client_writer.write(head.encode() + injection.body)
                with contextlib.suppress(ConnectionError):
                    await client_writer.drain()
                return True
        return False

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        answer_to: asyncio.StreamWriter | None,
        is_websocket: bool,
        hold: bool = False,
    ) -> None:
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if hold:
                    self.held.append(chunk)
                    continue
                while self.frozen or (is_websocket and self.frozen_websockets):  # noqa: ASYNC110 (polled flags)
                    await asyncio.sleep(0.05)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if answer_to is not None and await self._answer_instead(chunk, answer_to):
                    break
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
