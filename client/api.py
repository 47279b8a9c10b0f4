"""The Python API: submit a job, poll its status, cancel it, save its outputs.

One code path for RunPod and for the local endpoint: only the base URL differs
(`https://api.runpod.ai/v2/<endpoint id>` or `http://127.0.0.1:8000/v2/local`).
Blocking (requests): this is for scripts and the command line, not for the worker.

A job whose request would pass RunPod's size limit has its inline inputs uploaded to
the client's `bucket` and sent as URLs, saying so in the log; without a bucket,
`submit` raises `RequestTooLarge` before sending (`uploads.py`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from comfy_worker.contract import FINAL_STATES, OUTPUT_LISTS, JobState

from .uploads import UploadBucket, fit_request

log = logging.getLogger("client")

RUNPOD_API = "https://api.runpod.ai/v2"


class JobFailed(Exception):
    """The job ended in a state other than COMPLETED; `status` is its last /status body."""

    def __init__(self, status: dict[str, Any]):
        self.status = status
        error = status.get("error") or status["status"]
        super().__init__(f"job {status.get('id')} {status['status']}: {error}")


class EndpointClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        request_timeout_s: float = 30,
        bucket: UploadBucket | None = None,
    ):
        """`bucket` takes inputs too large for a request (default: none, such a job is refused)."""
        self.base_url = base_url.rstrip("/")
        self.bucket = bucket
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.request_timeout_s = request_timeout_s

    @classmethod
    def for_runpod(cls, endpoint_id: str, api_key: str, bucket: UploadBucket | None = None) -> EndpointClient:
        return cls(f"{RUNPOD_API}/{endpoint_id}", api_key, bucket=bucket)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, f"{self.base_url}{path}", timeout=self.request_timeout_s, **kwargs)
        if response.status_code >= 400:
            message = f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}"
            raise requests.HTTPError(message, response=response)
        return response.json()

    def submit(self, job_input: dict[str, Any], execution_timeout_ms: int | None = None) -> str:
        body: dict[str, Any] = {"input": job_input}
        if execution_timeout_ms:
            body["policy"] = {"executionTimeout": execution_timeout_ms}
        body, notices = fit_request(body, "/run", self.bucket)  # RequestTooLarge if it cannot fit
        for notice in notices:
            log.info("%s", notice)
        return self._call("POST", "/run", json=body)["id"]

    def status(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/status/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/cancel/{job_id}")

    def wait(
        self,
        job_id: str,
        on_status: Callable[[dict[str, Any]], None] = lambda status: None,
        poll_interval_s: float = 0.5,
    ) -> dict[str, Any]:
        """Poll /status until the job ends; each status goes to on_status. Returns the
        final status if COMPLETED, else raises JobFailed."""
        while True:
            status = self.status(job_id)
            on_status(status)
            if status["status"] in FINAL_STATES:
                if status["status"] != JobState.COMPLETED:
                    raise JobFailed(status)
                return status
            time.sleep(poll_interval_s)


def job_input_from_files(workflow: Path, images: Sequence[Path] = (), **options: Any) -> dict[str, Any]:
    """A job input from a workflow file (API or UI format) or a whole job file
    (`{"input": {...}}`, like test_input.json), and input files (sent as base64)."""
    loaded = json.loads(workflow.read_text())
    is_job_file = isinstance(loaded, dict) and isinstance(loaded.get("input"), dict)
    job: dict[str, Any] = dict(loaded["input"]) if is_job_file else {"workflow": loaded}
    if images:
        files = [{"name": p.name, "image": base64.b64encode(p.read_bytes()).decode()} for p in images]
        job["images"] = [*job.get("images", []), *files]
    job.update({key: value for key, value in options.items() if value is not None})
    return job


def output_file_name(job_id: str, entry: dict[str, Any]) -> str:
    """`<job id>-<node id>-<ComfyUI's file name>`: ComfyUI numbers files per run
    (ComfyUI_00001_.png each time on a fresh worker), so its name alone is not unique."""
    return Path(f"{job_id}-{entry.get('node_id', 'node')}-{Path(entry['filename']).name}").name


def save_outputs(
    output: dict[str, Any], folder: Path, job_id: str, session: requests.Session | None = None
) -> list[Path]:
    """Write every output file (base64 or URL) into folder, named by `output_file_name`; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for list_name in OUTPUT_LISTS.values():
        for entry in output.get(list_name) or []:
            path = folder / output_file_name(job_id, entry)
            if entry["type"] == "base64":
                path.write_bytes(base64.b64decode(entry["data"]))
            else:
                response = (session or requests).get(entry["data"], timeout=300)
                response.raise_for_status()
                path.write_bytes(response.content)
            saved.append(path)
    return saved
