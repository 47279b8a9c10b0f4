"""The server part of "Run on RunPod": the editor's requests, relayed to the user's endpoint.

The page never holds the API key and never calls the endpoint itself (no CORS, no key in
the browser): it calls these routes on the user's own ComfyUI (`routes.py`), and they call
the endpoint through the endpoint client (`AsyncEndpoint`) with the key kept in ComfyUI's
user folder (`endpoint_settings.py`). `Bridge` does what each route asks (the routes' table
is in `routes.py`); the graph's own checks and files are in `graph.py`.

Every failure answers JSON `{"error": "<what to do>"}` (and "node_ids" when it is about
nodes): no endpoint set, a wrong key (401), an unreachable endpoint, a request over
RunPod's limit, a graph with nothing to run or with nodes that have no API form.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from .endpoint_client import client
from .endpoint_settings import EndpointSettings
from .graph import BridgeError, check_graph, encoded_inputs, input_files, node_of
from .queue_history import History, Submitted, history_entry

log = logging.getLogger("runpod_run")

contract = client.contract
JobState = contract.JobState
REMEMBERED_RUNS = 200  # the runs whose submission and saved outputs are kept: nothing piles up
ENVIRONMENT = "the endpoint's environment on RunPod (the endpoint > Manage > Edit Endpoint > Environment Variables)"
ADVICE = {  # what the editor's user can do, beside the worker's own message
    # by RunPod's state
    JobState.TIMED_OUT: "raise the execution timeout (Settings > RunPod > Execution timeout, else the endpoint's "
    "own on RunPod), or make the workflow lighter (fewer steps, a smaller size)",
    # by the worker's error_type
    "timeout": f"JOB_TIMEOUT_S is set in {ENVIRONMENT}; or make the workflow lighter (fewer steps, a smaller size)",
    "output_too_large": f"the bucket's variables go in {ENVIRONMENT}; the editor then downloads the outputs from "
    "their URLs into output/. Or make fewer or smaller outputs",
    "comfyui_unavailable": "try again; if it keeps failing, look at the worker's logs on RunPod",
}
NO_BUCKET = (
    "start ComfyUI with BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY so large inputs go "
    "through your bucket, or load them from URLs"
)


class Bridge:
    def __init__(
        self,
        settings_path: Path,
        input_dir: Path,
        output_dir: Path,
        bucket: client.UploadBucket | None = None,
        history: History | None = None,
    ):
        """`bucket` takes inputs too large for a request (`UploadBucket.from_env()`; None: they
        are refused); `history` the runs that end (None: listed in the extension's panel only)."""
        self.settings = EndpointSettings(settings_path)
        self.bucket = bucket
        self.history = history
        self.input_dir = input_dir.resolve()
        self.output_dir = output_dir.resolve()
        self.saved: dict[str, asyncio.Future[list[dict[str, str]]]] = {}  # job id -> its outputs' saving, once
        self.submitted: dict[str, Submitted] = {}  # job id -> its submission, until its history entry
        self._endpoint: client.AsyncEndpoint | None = None  # one connection pool: the page polls each second

    async def close(self) -> None:
        if self._endpoint is not None:
            await self._endpoint.close()

    def public_settings(self) -> dict[str, Any]:
        return self.settings.public()

    def save_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.settings.save(changes)
        except ValueError as wrong:
            raise BridgeError(str(wrong)) from None

    def endpoint(self) -> client.AsyncEndpoint:
        """The client of the endpoint the settings name now, with the key saved for it."""
        try:
            base_url, key = self.settings.endpoint()
        except ValueError as unset:
            raise BridgeError(str(unset)) from None
        given = self._endpoint
        if given is None or given.base_url != base_url or given.api_key != key:
            if given is not None:
                asyncio.ensure_future(given.close())
            self._endpoint = client.AsyncEndpoint(base_url, key, self.bucket, request_timeout_s=120)
        assert self._endpoint is not None
        return self._endpoint

    async def relay(self, work: Any) -> Any:
        """An endpoint call; its failure as a BridgeError saying what the editor's user can do."""
        try:
            return await work
        except client.RequestTooLarge as exc:
            raise BridgeError(str(exc) if self.bucket else f"{exc}; for the editor: {NO_BUCKET}") from None
        except client.EndpointAnswered as exc:
            if exc.key_refused:
                message = "the endpoint refused the API key (HTTP 401): set the key in Settings > RunPod"
                raise BridgeError(message, 401) from None
            raise BridgeError(f"the endpoint answered HTTP {exc.status}: {exc.error}", 502) from None
        except client.EndpointError as exc:
            raise BridgeError(f"{exc}: check its ID or base URL", 502) from None

    async def run(
        self, prompt: Any, preview: bool = False, execution_timeout_s: Any = None, workflow: Any = None
    ) -> dict[str, Any]:
        check_graph(prompt)
        timeout_ms = execution_timeout_ms(execution_timeout_s)
        workflow = workflow if isinstance(workflow, dict) else None
        endpoint = self.endpoint()  # one is set, before anything is read or uploaded
        files = input_files(prompt, self.input_dir)
        job_input: dict[str, Any] = {"workflow": prompt, **({"preview": True} if preview else {})}
        if workflow is not None:  # the saved images carry it, as after a local run
            job_input["extra_pnginfo"] = {"workflow": workflow}
        images = await asyncio.to_thread(encoded_inputs, files, self.input_dir)  # megabytes: off the event loop
        if images:
            job_input["images"] = images
        job_id, moved = await self.relay(endpoint.run_fitted(job_input, timeout_ms))
        self.submitted[job_id] = Submitted(prompt, workflow, time.time())
        forget_oldest(self.submitted)
        return {"job_id": job_id, "files": [p.name for p in files], "uploaded": [move.name for move in moved]}

    async def status(self, job_id: str) -> dict[str, Any]:
        status = await self.relay(self.endpoint().status(job_id))
        output = status.get("output") if isinstance(status.get("output"), dict) else {}
        if status.get("status") == JobState.COMPLETED:
            saved = await self.saved_once(job_id, output)
            status = {**status, "output": without_files(output), "saved": saved}
        elif status.get("status") in contract.RETRYABLE_STATES:
            found = ADVICE.get(status["status"]) or ADVICE.get(str(output.get("error_type")))
            status = {**status, **({"advice": found} if found else {})}
        if status.get("status") in contract.FINAL_STATES:
            self.add_to_history(job_id, status)
        return status

    async def saved_once(self, job_id: str, output: dict[str, Any]) -> list[dict[str, str]]:
        """The run's outputs saved in output/, once however many status polls overlap: the
        first saves, the others wait for its list."""
        if job_id not in self.saved:
            self.saved[job_id] = asyncio.ensure_future(self.save_outputs(output))
            forget_oldest(self.saved)
        try:
            return await asyncio.shield(self.saved[job_id])
        except Exception as exc:
            self.saved.pop(job_id, None)  # the next poll tries again
            raise BridgeError(f"the job is done, but its outputs could not be saved in output/: {exc}", 500) from None

    async def save_outputs(self, output: dict[str, Any]) -> list[dict[str, str]]:
        self.output_dir.mkdir(parents=True, exist_ok=True)  # ComfyUI makes it only when it first saves
        files = await client.save_outputs(output, self.free_path)
        return [
            {"filename": path.name, "subfolder": "", "type": "output", "node_id": str(entry.get("node_id", ""))}
            for entry, path in files
        ]

    def free_path(self, entry: dict[str, Any]) -> Path:
        """The output's own file name in the output folder, numbered when taken (never overwritten),
        the file made at once so that the next output cannot take the name."""
        name = Path(str(entry.get("filename") or "output")).name or "output"
        path, number = self.output_dir / name, 1
        while True:
            try:
                path.open("xb").close()
                return path
            except FileExistsError:
                path = self.output_dir / f"{Path(name).stem}_runpod{number}{Path(name).suffix}"
                number += 1

    def add_to_history(self, job_id: str, status: dict[str, Any]) -> None:
        """The ended run in ComfyUI's queue history, once; a failure there is only logged (it
        reaches into ComfyUI's own objects, which a ComfyUI version may change)."""
        submitted = self.submitted.pop(job_id, None)
        if self.history is None or submitted is None:
            return
        try:
            entry = history_entry(job_id, submitted, status, self.history.next_number(), time.time())
            self.history.add(job_id, entry)
        except Exception:
            log.warning("run %s could not be added to ComfyUI's queue history", job_id, exc_info=True)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(await self.relay(self.endpoint().cancel(job_id)))

    async def check(self, prompt: Any, workflow: Any = None) -> dict[str, Any]:
        """The worker's answer to a validate-only job of the graph (its UI graph tells the
        worker which package a missing node comes from)."""
        check_graph(prompt)
        job_input: dict[str, Any] = {"workflow": prompt, "validate_only": True}
        if isinstance(workflow, dict):
            job_input["extra_pnginfo"] = {"workflow": workflow}
        endpoint = self.endpoint()
        status = await self.relay(endpoint.runsync(job_input))
        if status.get("status") not in contract.FINAL_STATES:  # a cold worker: follow the job
            status = await self.relay(endpoint.wait(str(status.get("id")), poll_interval_s=1, raise_failed=False))
        output = status.get("output") if isinstance(status.get("output"), dict) else {}
        if status.get("status") == JobState.COMPLETED:
            return {"valid": True, "problems": []}
        if output.get("error_type") != "invalid_input":
            problem = output.get("error") or status.get("error") or status.get("status")
            raise BridgeError(f"the endpoint could not check the workflow: {problem}", 502)
        problems = [{"node_id": node_of(problem["field"]), **problem} for problem in output["details"]["problems"]]
        return {"valid": False, "problems": problems, "more_problems": output["details"].get("more_problems", 0)}


def execution_timeout_ms(execution_timeout_s: Any) -> int | None:
    """RunPod's policy.executionTimeout for the editor's execution timeout (seconds; 0 or None: the endpoint's)."""
    if execution_timeout_s in (None, 0, ""):
        return None
    if isinstance(execution_timeout_s, bool) or not isinstance(execution_timeout_s, int | float):
        raise BridgeError("the execution timeout must be a number of seconds (Settings > RunPod)")
    if not 0 < execution_timeout_s <= 7 * 24 * 3600:
        raise BridgeError("the execution timeout must be between 1 second and 7 days (Settings > RunPod)")
    return max(1000, round(execution_timeout_s * 1000))


def forget_oldest(runs: dict[str, Any]) -> None:
    """Keeps the REMEMBERED_RUNS latest entries (a run the page stopped following never ends here)."""
    while len(runs) > REMEMBERED_RUNS:
        runs.pop(next(iter(runs)))


def without_files(output: dict[str, Any]) -> dict[str, Any]:
    """The output without its file contents (the page shows the saved files instead)."""
    return {key: value for key, value in output.items() if key not in contract.OUTPUT_LISTS.values()}
