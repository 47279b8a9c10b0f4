"""The server part of "Run on RunPod": the editor's requests, relayed to the user's endpoint.

The page never holds the API key and never calls the endpoint itself (no CORS, no key
in the browser): it calls these routes on the user's own ComfyUI, and they call the
endpoint (`https://api.runpod.ai/v2/<endpoint id>`, or a base URL such as the local
endpoint's `http://127.0.0.1:8000/v2/local`) with the key kept in ComfyUI's user folder:

    GET  /runpod/settings        {"endpoint_id", "base_url", "has_key"} (never the key)
    POST /runpod/settings        {"endpoint_id"?, "base_url"?, "api_key"?}: saved (file mode 600)
    POST /runpod/run             {"prompt": <the API graph graphToPrompt gives>, "workflow"?: <its UI
                                 graph, which the saved images carry>, "preview"?: bool,
                                 "execution_timeout_s"?: seconds (RunPod's policy.executionTimeout;
                                 0 or absent: the endpoint's own)}
                                 -> {"job_id", "files", "uploaded"}: the files its loaders name in
                                 the local input folder travel as the job's `images`; when they
                                 would pass RunPod's 10 MB limit, the largest go through the
                                 bucket BUCKET_* names (as for the worker and the client; boto3
                                 needed) as presigned URLs, listed in "uploaded"
    GET  /runpod/status/{id}     the endpoint's /status; once COMPLETED, the outputs written into
                                 the local output folder (plain file names, never outside it),
                                 listed in "saved" as ComfyUI's /view names them; once FAILED or
                                 TIMED_OUT, "advice": what the editor's user can do about it.
                                 A run that ends is added to ComfyUI's queue history, so the
                                 editor's Queue panel lists it with its outputs and workflow
    POST /runpod/cancel/{id}     the job cancelled on the endpoint
    POST /runpod/check           {"prompt", "workflow"?} -> {"missing_models", "missing_nodes"}: what
                                 the endpoint lacks (`{"list": "models"}`, `{"list": "nodes"}`), a
                                 missing node with the package its UI graph records, if any

Every failure answers JSON `{"error": "<what to do>"}` (and "node_ids" when it is about
nodes): no endpoint set, a wrong key (401), an unreachable endpoint, a request over
RunPod's 10 MB limit, a graph with nothing to run or with nodes that have no API form.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlparse

import aiohttp
from aiohttp import web

try:
    from .contract import FINAL_STATES, OUTPUT_LISTS, RUNPOD_REQUEST_LIMITS, JobState
except ImportError:  # loaded on its own, outside ComfyUI's custom nodes (its tests)
    from contract import FINAL_STATES, OUTPUT_LISTS, RUNPOD_REQUEST_LIMITS, JobState  # type: ignore[no-redef,import-not-found]

log = logging.getLogger("runpod_run")

RUNPOD_API = "https://api.runpod.ai/v2"
RUN_LIMIT_BYTES = RUNPOD_REQUEST_LIMITS["/run"]  # RunPod refuses a larger /run body
REMEMBERED_RUNS = 200  # the runs whose submission and saved outputs are kept: nothing piles up
FILE_INPUTS = ("image", "video", "audio", "file")  # the loaders' file-name inputs
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=120, connect=10)
ENDPOINT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
UPLOAD_URL_EXPIRY_S = 24 * 3600  # RunPod keeps a job queued at most a day by default

Upload = Callable[[bytes, str], str]
"""(content, file name) -> a presigned GET URL of the uploaded copy."""
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac")


class History(Protocol):
    """ComfyUI's queue history, where the editor's Queue panel finds runs (`__init__.py`)."""

    def next_number(self) -> int:
        """A queue number above every run's so far (the panel shows only newer entries)."""
        ...

    def add(self, entry_id: str, entry: dict[str, Any]) -> None: ...


class Submitted(NamedTuple):
    """What the history entry of a run needs from its submission."""

    prompt: dict[str, Any]
    workflow: dict[str, Any] | None
    at_s: float


class BridgeError(Exception):
    """A request the bridge cannot carry out; the message says what to do, `node_ids` which
    nodes of the graph it is about (the editor marks them)."""

    def __init__(self, message: str, status: int = 400, node_ids: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.node_ids = node_ids or []


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


def bucket_upload(env: Mapping[str, str] = os.environ) -> Upload | None:
    """Uploads to the bucket the BUCKET_* variables of ComfyUI's process name, or None."""
    endpoint_url = env.get("BUCKET_ENDPOINT_URL")
    if not endpoint_url:
        return None
    bucket = env.get("BUCKET_NAME") or (urlparse(endpoint_url).hostname or "").split(".")[0]

    def upload(content: bytes, name: str) -> str:
        try:
            import boto3
        except ImportError:
            raise BridgeError("inputs over RunPod's limit go through the bucket, which needs boto3 in ComfyUI's Python "
                              "(pip install boto3)") from None  # fmt: skip
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=env.get("BUCKET_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("BUCKET_SECRET_ACCESS_KEY"),
            region_name=env.get("BUCKET_REGION") or None,
        )
        key = f"{env.get('BUCKET_PREFIX', '')}editor-uploads/{uuid.uuid4().hex}/{name}"
        s3.put_object(Bucket=bucket, Key=key, Body=content)
        params = {"Bucket": bucket, "Key": key}
        return str(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=UPLOAD_URL_EXPIRY_S))

    return upload


class Bridge:
    def __init__(
        self,
        settings_path: Path,
        input_dir: Path,
        output_dir: Path,
        upload: Upload | None = None,
        history: History | None = None,
    ):
        """`upload` takes inputs too large for a request (`bucket_upload`; None: they are refused);
        `history` the runs that end (None: they are listed in the extension's panel only)."""
        self.upload = upload
        self.history = history
        self.settings_path = settings_path
        self.input_dir = input_dir.resolve()
        self.output_dir = output_dir.resolve()
        self.saved: dict[str, asyncio.Future[list[dict[str, str]]]] = {}  # job id -> its outputs' saving, once
        self.submitted: dict[str, Submitted] = {}  # job id -> its submission, until its history entry
        self._stored: dict[str, Any] | None = None  # the settings file, read once
        self._session: aiohttp.ClientSession | None = None  # one connection pool: the page polls each second

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- settings --------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The stored settings: `endpoint_id`, `base_url`, and `keys`, each API key under the
        endpoint URL it was saved with (a file of an older version, with one `api_key`, reads as
        that key for the endpoint it was saved beside)."""
        if self._stored is None:
            try:
                stored = json.loads(self.settings_path.read_text())
            except (OSError, ValueError):
                stored = {}
            stored = stored if isinstance(stored, dict) else {}
            settings: dict[str, Any] = {key: str(stored[key]) for key in ("endpoint_id", "base_url") if stored.get(key)}
            keys = mapping(stored.get("keys"))
            settings["keys"] = {str(url): str(key) for url, key in keys.items() if key}
            if stored.get("api_key") and endpoint_url(settings):
                settings["keys"].setdefault(endpoint_url(settings), str(stored["api_key"]))
            self._stored = settings
        return {**self._stored, "keys": dict(self._stored["keys"])}

    def public_settings(self) -> dict[str, Any]:
        stored = self.settings()
        return {
            "endpoint_id": stored.get("endpoint_id", ""),
            "base_url": stored.get("base_url", ""),
            "has_key": endpoint_url(stored) in stored["keys"],
        }

    def save_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Saves the changes (file mode 600). A key belongs to the endpoint URL it is saved with:
        a change of endpoint without a key leaves the new endpoint keyless, so the key is never
        sent to a URL the user did not give together with it."""
        stored = self.settings()
        for key in ("endpoint_id", "base_url"):
            if key in changes:
                value = str(changes[key] or "").strip()
                if value:
                    stored[key] = value
                else:
                    stored.pop(key, None)
        if stored.get("base_url") and not stored["base_url"].startswith(("http://", "https://")):
            raise BridgeError("the base URL must start with http:// or https://")
        if stored.get("endpoint_id") and not ENDPOINT_ID.fullmatch(stored["endpoint_id"]):
            raise BridgeError("the endpoint ID is letters, digits, '-' and '_' only (RunPod's console shows it)")
        if "api_key" in changes:
            api_key = str(changes["api_key"] or "").strip()
            if not endpoint_url(stored):
                if api_key:
                    raise BridgeError(
                        "set the endpoint ID (or a base URL) before its API key: a key is kept for one endpoint"
                    )
            elif api_key:
                stored["keys"][endpoint_url(stored)] = api_key
            else:
                stored["keys"].pop(endpoint_url(stored), None)
        self.settings_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.settings_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(stored, file)
        self._stored = stored
        return self.public_settings()

    def endpoint(self) -> tuple[str, dict[str, str]]:
        """The endpoint's URL and the headers for it: the key saved with this very URL, if any."""
        stored = self.settings()
        base = endpoint_url(stored)
        if not base:
            raise BridgeError("no endpoint set: give the endpoint ID (or a base URL) in Settings > RunPod")
        key = stored["keys"].get(base)
        return base, {"Authorization": f"Bearer {key}"} if key else {}

    # -- calls to the endpoint ---------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        base, headers = self.endpoint()
        try:
            async with self.session().request(method, f"{base}{path}", json=body, headers=headers) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            unreachable = f"the endpoint at {base} is unreachable ({type(exc).__name__}): check its ID or base URL"
            raise BridgeError(unreachable, 502) from None
        if response.status in (401, 403):
            raise BridgeError("the endpoint refused the API key (HTTP 401): set the key in Settings > RunPod", 401)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {"error": text[:300]}
        if response.status >= 400:
            raise BridgeError(f"the endpoint answered HTTP {response.status}: {answer.get('error') or text[:300]}", 502)
        return answer

    async def run(
        self, prompt: Any, preview: bool = False, execution_timeout_s: Any = None, workflow: Any = None
    ) -> dict[str, Any]:
        check_graph(prompt)
        policy = execution_policy(execution_timeout_s)
        workflow = workflow if isinstance(workflow, dict) else None
        self.endpoint()  # an endpoint is set, before anything is read or uploaded
        files = self.input_files(prompt)
        job_input: dict[str, Any] = {"workflow": prompt, **({"preview": True} if preview else {})}
        if workflow is not None:  # the saved images carry it, as after a local run
            job_input["extra_pnginfo"] = {"workflow": workflow}
        images = await asyncio.to_thread(self.encoded_inputs, files)  # up to megabytes: off the event loop
        if images:
            job_input["images"] = images
        uploaded = await self.fit(job_input, images)
        answer = await self.call("POST", "/run", {"input": job_input, **({"policy": policy} if policy else {})})
        self.submitted[answer["id"]] = Submitted(prompt, workflow, time.time())
        forget_oldest(self.submitted)
        return {
            "job_id": answer["id"],
            "status": answer.get("status"),
            "files": [p.name for p in files],
            "uploaded": uploaded,
        }

    async def fit(self, job_input: dict[str, Any], images: list[dict[str, str]]) -> list[str]:
        """Within RunPod's limit: the largest input files moved to the bucket until the request
        fits; their names. Without a bucket, or when that is not enough, a BridgeError."""
        size = len(json.dumps({"input": job_input}))
        over = f"the request is {size / 1e6:.1f} MB with its input files, over RunPod's limit of 10 MB for /run"
        if size <= RUN_LIMIT_BYTES:
            return []
        if self.upload is None:
            raise BridgeError(
                f"{over}: start ComfyUI with BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY "
                "so large inputs go through your bucket, or load them from URLs"
            )
        uploaded = []
        for image in sorted(images, key=lambda image: len(image["image"]), reverse=True):
            content = base64.b64decode(image["image"])
            try:
                image["image"] = await asyncio.to_thread(self.upload, content, image["name"])
            except BridgeError:
                raise
            except Exception as exc:  # the bucket's own error (boto3's), for the editor to show
                raise BridgeError(
                    f"{over}, and the upload of {image['name']} to the bucket failed: {exc}", 502
                ) from None
            uploaded.append(image["name"])
            if len(json.dumps({"input": job_input})) <= RUN_LIMIT_BYTES:
                return uploaded
        raise BridgeError(f"{over}, even with every input file in the bucket: the workflow itself is too large")

    def encoded_inputs(self, files: list[Path]) -> list[dict[str, str]]:
        """The files as the job's `images` entries (base64)."""
        return [
            {"name": path.name, "subfolder": subfolder(path, self.input_dir), "image": encoded(path)} for path in files
        ]

    def input_files(self, prompt: dict[str, Any]) -> list[Path]:
        """The local input files the graph's loaders name (inside the input folder only)."""
        found = []
        for node in prompt.values():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            for name, value in (inputs or {}).items():
                if name not in FILE_INPUTS or not isinstance(value, str):
                    continue
                path = (self.input_dir / value.removesuffix(" [input]")).resolve()
                if path.is_relative_to(self.input_dir) and path.is_file() and path not in found:
                    found.append(path)
        return found

    async def status(self, job_id: str) -> dict[str, Any]:
        status = await self.call("GET", f"/status/{job_id}")
        if status.get("status") == JobState.COMPLETED:
            saved = await self.saved_once(job_id, status.get("output") or {})
            status = {**status, "output": summary(status.get("output") or {}), "saved": saved}
        elif status.get("status") in (JobState.FAILED, JobState.TIMED_OUT):
            output = mapping(status.get("output"))
            found = ADVICE.get(status["status"]) or ADVICE.get(str(output.get("error_type")))
            status = {**status, **({"advice": found} if found else {})}
        if status.get("status") in FINAL_STATES:
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
        except (OSError, aiohttp.ClientError, ValueError) as exc:
            self.saved.pop(job_id, None)  # the next poll tries again
            raise BridgeError(f"the job is done, but its outputs could not be saved in output/: {exc}", 500) from None

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
        return await self.call("POST", f"/cancel/{job_id}")

    async def save_outputs(self, output: dict[str, Any]) -> list[dict[str, str]]:
        self.output_dir.mkdir(parents=True, exist_ok=True)  # ComfyUI makes it only when it first saves
        saved = []
        for list_name in OUTPUT_LISTS.values():
            for entry in output.get(list_name) or []:
                path = self.free_name(Path(str(entry.get("filename") or "output")).name or "output")
                if entry.get("type") == "base64":
                    await asyncio.to_thread(path.write_bytes, base64.b64decode(entry["data"]))
                else:
                    await self.download(entry["data"], path)
                node_id = str(entry.get("node_id", ""))
                saved.append({"filename": path.name, "subfolder": "", "type": "output", "node_id": node_id})
        return saved

    async def download(self, url: str, path: Path) -> None:
        """The URL's body streamed into `path` (a video of gigabytes never sits in memory);
        nothing is left at `path` when it fails."""
        try:
            async with self.session().get(url) as response:
                response.raise_for_status()
                with path.open("xb") as file:
                    async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                        await asyncio.to_thread(file.write, chunk)
        except BaseException:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise

    def free_name(self, name: str) -> Path:
        """`name` in the output folder, numbered when taken: the editor never overwrites a file."""
        path = self.output_dir / name
        stem, suffix, number = path.stem, path.suffix, 1
        while path.exists():
            path = self.output_dir / f"{stem}_runpod{number}{suffix}"
            number += 1
        return path

    async def check(self, prompt: Any, workflow: Any = None) -> dict[str, Any]:
        check_graph(prompt)
        models, nodes = await asyncio.gather(self.ask({"list": "models"}), self.ask({"list": "nodes"}))
        known_nodes = set(nodes.get("nodes") or [])
        packages = packages_by_node(workflow)
        missing_nodes: list[dict[str, str]] = []
        missing_models = []
        for node_id, node in prompt.items():
            class_type = node.get("class_type")
            if known_nodes and class_type not in known_nodes:
                package = {"package": packages[node_id]} if node_id in packages else {}
                missing_nodes.append({"node_id": node_id, "class_type": class_type, **package})
                continue
            for name, value in (node.get("inputs") or {}).items():
                folder = ((models.get("loader_inputs") or {}).get(f"{class_type}.{name}") or {}).get("folder")
                if folder and isinstance(value, str) and value not in (models.get("models") or {}).get(folder, []):
                    missing_models.append({"node_id": node_id, "input": name, "value": value, "folder": folder})
        return {"missing_nodes": missing_nodes, "missing_models": missing_models}

    async def ask(self, job_input: dict[str, Any]) -> dict[str, Any]:
        """A list question, answered by /runsync."""
        answer = await self.call("POST", "/runsync?wait=90000", {"input": job_input})
        if answer.get("status") != JobState.COMPLETED:
            problem = answer.get("error") or answer.get("status")
            raise BridgeError(f"the endpoint could not answer {job_input}: {problem}", 502)
        return dict(answer.get("output") or {})


def endpoint_url(settings: Mapping[str, Any]) -> str:
    """The endpoint the settings name: the base URL, else RunPod's URL of the endpoint ID; "" if neither."""
    if settings.get("base_url"):
        return str(settings["base_url"]).rstrip("/")
    if settings.get("endpoint_id"):
        return f"{RUNPOD_API}/{settings['endpoint_id']}"
    return ""


def history_entry(
    job_id: str, submitted: Submitted, status: dict[str, Any], number: int, ended_s: float
) -> dict[str, Any]:
    """A run that ended, as ComfyUI's queue history holds a prompt it ran (execution.py's
    PromptQueue.task_done): the prompt with its workflow (the panel's "load workflow"), the
    saved outputs by node, and the status with its timings and error."""
    outputs: dict[str, dict[str, list[dict[str, str]]]] = {}
    for file in status.get("saved") or []:
        media = "audio" if file["filename"].lower().endswith(AUDIO_SUFFIXES) else "images"
        view = {key: file[key] for key in ("filename", "subfolder", "type")}
        outputs.setdefault(file.get("node_id") or "output", {}).setdefault(media, []).append(view)
    started_ms, ended_ms = round(submitted.at_s * 1000), round(ended_s * 1000)
    messages: list[list[Any]] = [["execution_start", {"prompt_id": job_id, "timestamp": started_ms}]]
    state = status.get("status")
    output = mapping(status.get("output"))
    if state == JobState.COMPLETED:
        messages.append(["execution_success", {"prompt_id": job_id, "timestamp": ended_ms}])
    elif state == JobState.CANCELLED:
        messages.append(["execution_interrupted", {"prompt_id": job_id, "timestamp": ended_ms}])
    else:
        details = mapping(output.get("details"))
        node_id = str(details.get("node_id") or "")
        error = {
            "prompt_id": job_id,
            "node_id": node_id,
            "node_type": str((submitted.prompt.get(node_id) or {}).get("class_type") or ""),
            "exception_type": f"RunPod {state}",
            "exception_message": str(output.get("error") or status.get("error") or state),
            "traceback": [],
            "timestamp": ended_ms,
        }
        messages.append(["execution_error", error])
    extra_data: dict[str, Any] = {"create_time": started_ms, "runpod_job_id": job_id}
    if submitted.workflow is not None:
        extra_data["extra_pnginfo"] = {"workflow": submitted.workflow}
    return {
        "prompt": (number, job_id, submitted.prompt, extra_data, list(outputs)),
        "outputs": outputs,
        "status": {
            "status_str": "success" if state == JobState.COMPLETED else "error",
            "completed": state == JobState.COMPLETED,
            "messages": messages,
        },
        "meta": {},
    }


def packages_by_node(workflow: Any) -> dict[str, str]:
    """Node id -> the package the UI graph records for it (`properties.cnr_id` / `aux_id`; the
    worker reads the same for its own message, comfy_worker/ui_format.py)."""
    found = {}
    for node in (workflow.get("nodes") if isinstance(workflow, dict) else None) or []:
        properties = node.get("properties") if isinstance(node, dict) else None
        package = (properties.get("cnr_id") or properties.get("aux_id")) if isinstance(properties, dict) else None
        if isinstance(package, str) and package:
            found[str(node.get("id"))] = package
    return found


def check_graph(prompt: Any) -> None:
    """A graph the endpoint can be given: an API-format object whose every node has a type."""
    if not isinstance(prompt, dict):
        raise BridgeError("'prompt' must be the workflow in API format (an object of nodes)")
    if not prompt:
        raise BridgeError(
            "the graph has nothing to run: its nodes are all editor-only (notes, reroutes, primitives), muted or "
            "bypassed. Add an output node such as Save Image"
        )
    formless = [str(node_id) for node_id, node in prompt.items() if not has_type(node)]
    if formless:
        raise BridgeError(
            f"node {', '.join(formless)} has no API form: its type is not installed in this ComfyUI, so the editor "
            "cannot turn it into the API format. Install its node pack here (the endpoint needs it too), or remove "
            "or bypass the node",
            node_ids=formless,
        )


def has_type(node: Any) -> bool:
    return isinstance(node, dict) and isinstance(node.get("class_type"), str) and bool(node["class_type"])


def execution_policy(execution_timeout_s: Any) -> dict[str, int]:
    """RunPod's `policy` for the editor's execution timeout (seconds; 0 or None: the endpoint's)."""
    if execution_timeout_s in (None, 0, ""):
        return {}
    if isinstance(execution_timeout_s, bool) or not isinstance(execution_timeout_s, int | float):
        raise BridgeError("the execution timeout must be a number of seconds (Settings > RunPod)")
    if not 0 < execution_timeout_s <= 7 * 24 * 3600:
        raise BridgeError("the execution timeout must be between 1 second and 7 days (Settings > RunPod)")
    return {"executionTimeout": max(1000, round(execution_timeout_s * 1000))}


def forget_oldest(runs: dict[str, Any]) -> None:
    """Keeps the REMEMBERED_RUNS latest entries (a run the page stopped following never ends here)."""
    while len(runs) > REMEMBERED_RUNS:
        runs.pop(next(iter(runs)))


def subfolder(path: Path, folder: Path) -> str:
    relative = path.parent.relative_to(folder).as_posix()
    return "" if relative == "." else relative


def encoded(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (what the endpoint sent may be anything)."""
    return value if isinstance(value, dict) else {}


def summary(output: dict[str, Any]) -> dict[str, Any]:
    """The output without its file contents (the page shows the saved files instead)."""
    return {key: value for key, value in output.items() if key not in OUTPUT_LISTS.values()}


def foreign_request(request: web.Request, own_hosts: frozenset[str]) -> str | None:
    """Why a request may come from a page that is not this ComfyUI's own, or None.

    The routes hold a key, so they answer only a Host that cannot be a DNS-rebound name (an IP
    literal, `localhost`, or a name ComfyUI was told it serves: `own_hosts`), and only a
    same-origin page (an Origin, when the browser sends one, equal to the Host). ComfyUI's own
    origin check compares the two only for loopback names, which a rebound name is not."""
    host = request.headers.get("Host", "")
    name = (urlparse(f"//{host}").hostname or "").lower()
    if not name or not (is_ip_literal(name) or name == "localhost" or name in own_hosts):
        return f"the RunPod routes answer only this ComfyUI's own address, not the host name {name or '(none)'!r}"
    origin = request.headers.get("Origin")
    if origin is not None and urlparse(origin).netloc.lower() != host.lower():
        return "the RunPod routes answer only pages served by this ComfyUI (a request from another origin)"
    return None


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def own_host_names(listen: str | None, env: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The host names this ComfyUI serves: the names in its --listen, and RUNPOD_RUN_ALLOWED_HOSTS
    (comma-separated, for a name a reverse proxy serves it under)."""
    names = [*(listen or "").split(","), *env.get("RUNPOD_RUN_ALLOWED_HOSTS", "").split(",")]
    return frozenset(name.strip().lower() for name in names if name.strip())


def routes(bridge: Bridge, own_hosts: frozenset[str] = frozenset()) -> list[web.RouteDef]:
    """The /runpod/ routes; each refuses a request from a page that is not this ComfyUI's own
    (`foreign_request`) with HTTP 403."""

    def guarded(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def guard(request: web.Request) -> web.Response:
            refused = foreign_request(request, own_hosts)
            if refused is not None:
                log.warning("refused %s %s: %s", request.method, request.path, refused)
                return web.json_response({"error": refused}, status=403)
            return await handler(request)

        return guard

    async def answer(work: Any) -> web.Response:
        try:
            return web.json_response(await work)
        except BridgeError as error:
            nodes = {"node_ids": error.node_ids} if error.node_ids else {}
            return web.json_response({"error": str(error), **nodes}, status=error.status)

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            parsed = await request.json()
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {}

    async def get_settings(request: web.Request) -> web.Response:
        return web.json_response(bridge.public_settings())

    async def post_settings(request: web.Request) -> web.Response:
        async def save() -> dict[str, Any]:
            return bridge.save_settings(await body(request))

        return await answer(save())

    async def run(request: web.Request) -> web.Response:
        given = await body(request)
        timeout_s, workflow = given.get("execution_timeout_s"), given.get("workflow")
        return await answer(bridge.run(given.get("prompt"), given.get("preview") is True, timeout_s, workflow))

    async def status(request: web.Request) -> web.Response:
        return await answer(bridge.status(request.match_info["job_id"]))

    async def cancel(request: web.Request) -> web.Response:
        return await answer(bridge.cancel(request.match_info["job_id"]))

    async def check(request: web.Request) -> web.Response:
        given = await body(request)
        return await answer(bridge.check(given.get("prompt"), given.get("workflow")))

    return [
        web.get("/runpod/settings", guarded(get_settings)),
        web.post("/runpod/settings", guarded(post_settings)),
        web.post("/runpod/run", guarded(run)),
        web.get("/runpod/status/{job_id}", guarded(status)),
        web.post("/runpod/cancel/{job_id}", guarded(cancel)),
        web.post("/runpod/check", guarded(check)),
    ]
