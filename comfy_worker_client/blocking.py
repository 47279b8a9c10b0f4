"""`EndpointClient`: the endpoint client for scripts and the command line, blocking.

Each call runs `AsyncEndpoint`'s coroutine on the client's own event loop (an
`asyncio.Runner`, so its connections are reused from call to call); Ctrl-C during a
call cancels it and raises KeyboardInterrupt, and the client stays usable (the command
line then cancels the job). Not for code already inside an event loop: use
`AsyncEndpoint` there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from .endpoint import RUNPOD_API, AsyncEndpoint, Status
from .files import output_file_name, save_outputs
from .uploads import UploadBucket

T = TypeVar("T")


class EndpointClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        bucket: UploadBucket | None = None,
        request_timeout_s: float = 30,
    ):
        self.endpoint = AsyncEndpoint(base_url, api_key, bucket, request_timeout_s)
        self._runner = asyncio.Runner()

    @classmethod
    def for_runpod(cls, endpoint_id: str, api_key: str, bucket: UploadBucket | None = None) -> EndpointClient:
        return cls(f"{RUNPOD_API}/{endpoint_id}", api_key, bucket)

    @property
    def base_url(self) -> str:
        return self.endpoint.base_url

    def _do(self, work: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(work)

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Any other route of the endpoint (e.g. the local endpoint's /health); its JSON answer."""
        return self._do(self.endpoint.call(method, path, body))

    def run(self, job_input: dict[str, Any], execution_timeout_ms: int | None = None) -> str:
        return self._do(self.endpoint.run(job_input, execution_timeout_ms))

    def runsync(self, job_input: dict[str, Any]) -> Status:
        return self._do(self.endpoint.runsync(job_input))

    def status(self, job_id: str) -> Status:
        return self._do(self.endpoint.status(job_id))

    def cancel(self, job_id: str) -> Status:
        return self._do(self.endpoint.cancel(job_id))

    def wait(
        self, job_id: str, on_status: Callable[[Status], None] = lambda status: None, poll_interval_s: float = 0.5
    ) -> Status:
        """Polls until the job ends (see `AsyncEndpoint.wait`): the final status, or `JobFailed`."""
        return self._do(self.endpoint.wait(job_id, on_status, poll_interval_s))

    def save_outputs(self, output: dict[str, Any], folder: Path, job_id: str) -> list[Path]:
        """Every output file of a result in `folder`, as `<job id>-<node id>-<file name>`; their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        saved = self._do(save_outputs(output, lambda entry: folder / output_file_name(job_id, entry)))
        return [path for _, path in saved]

    def close(self) -> None:
        self._do(self.endpoint.close())
        self._runner.close()

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
