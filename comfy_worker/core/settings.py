"""Worker settings, read once from the environment.

Contract: `Settings.from_env(mapping)` returns a frozen, validated value or raises
`ValueError` naming the variable and what is wrong. Each field declares its
environment variable and parser once (`setting(...)`); its docstring is the text of
the settings table in docs/deploy.md, and a test keeps the two in agreement. Tests pass plain
dicts instead of touching os.environ.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _jobs_in_flight(raw: str) -> int:
    value = _positive_int(raw)
    if value > 8:
        raise ValueError("at most 8: one ComfyUI runs one prompt at a time, more only wait longer")
    return value


def _http_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected an http(s) URL")
    return raw


def _url_expiry(raw: str) -> int:
    value = _positive_int(raw)
    if value > 7 * 24 * 3600:
        raise ValueError("presigned URLs live at most 7 days (604800 s)")
    return value


def _host_port(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError("expected host:port, e.g. 127.0.0.1:8188")
    return raw


def _boolean(raw: str) -> bool:
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def setting(env: str, parse: Callable[[str], Any], default: Any, *, secret: bool = False) -> Any:
    """A settings field read from the environment variable `env` with `parse`."""
    return dataclasses.field(default=default, repr=not secret, metadata={"env": env, "parse": parse})


@dataclass(frozen=True)
class Settings:
    comfy_host: str = setting("COMFY_HOST", _host_port, "127.0.0.1:8188")
    """host:port of the ComfyUI server."""
    comfyui_path: Path = setting("COMFYUI_PATH", Path, Path("/comfyui"))
    """ComfyUI's base folder; job files live in its `input/`, `output/` and `temp/`."""
    workflows_dir: Path = setting("WORKFLOWS_DIR", Path, Path("ComfyUI/workflows"))
    """The named workflows (`<name>.json` with its parameter map `<name>.toml`), read at start-up; a
    relative path starts in the worker's folder (start.sh runs from it)."""
    model_cache_dir: Path = setting("MODEL_CACHE_DIR", Path, Path("/tmp/comfy-model-cache"))
    """Where models fetched by URL or hf:// are kept (ComfyUI reads its model folders from there). start.sh
    sets /runpod-volume/model-cache when a network volume is mounted, so workers share it."""
    model_cache_max_gb: float = setting("MODEL_CACHE_MAX_GB", _positive_float, 40.0)
    """The cache's size cap in GB: past it, the least recently used models not in use are removed."""
    model_download_max_gb: float = setting("MODEL_DOWNLOAD_MAX_GB", _positive_float, 30.0)
    """The largest model file a job may fetch, in GB."""
    model_download_timeout_s: float = setting("MODEL_DOWNLOAD_TIMEOUT_S", _positive_float, 1800.0)
    """How long one model download may take (seconds)."""
    allow_pickle_models: bool = setting("ALLOW_PICKLE_MODELS", _boolean, False)
    """Let jobs fetch pickled model formats (.ckpt, .pt, .pth, .bin), which can run code when loaded."""
    hf_endpoint: str = setting("HF_ENDPOINT", _http_url, "https://huggingface.co")
    """The Hugging Face Hub that hf:// references are fetched from."""
    hf_token: str | None = setting("HF_TOKEN", str, None, secret=True)
    """Hugging Face token for hf:// models (a job's own token takes precedence)."""
    comfy_pid_file: Path = setting("COMFY_PID_FILE", Path, Path("/tmp/comfyui.pid"))
    """ComfyUI's PID, written by start.sh: the worker waits for ComfyUI while this process lives and
    fails at once when it has exited. Without the file it waits up to the timeout."""
    nodes_snapshot: str = setting("NODES_SNAPSHOT", str, "")
    """ComfyUI's node list as last read (GET /object_info), kept so the worker is ready the moment ComfyUI
    answers; empty: `<COMFYUI_PATH>/worker-object-info.json`, which the image build writes. `off`: always
    read it from ComfyUI before the first job."""
    volume_node_packs: Path | None = setting("VOLUME_NODE_PACKS", Path, None)
    """The report of the network volume's custom node packs that start.sh's boot step writes
    (comfy_worker/node_packs): which it offered to ComfyUI, which it refused and why. start.sh sets
    it when the volume has a `ComfyUI/custom_nodes` folder (VOLUME_CUSTOM_NODES_DIR); not for users."""
    comfy_api_nodes: bool = setting("COMFY_API_NODES", _boolean, False)
    """Load ComfyUI's Comfy.org API nodes (they call Comfy.org's paid services with a job's
    `comfy_org_api_key`). Off, ComfyUI starts sooner; start.sh reads it."""
    warmup_job: Path | None = setting("WARMUP_JOB", Path, None)
    """A job file (`{"input": ...}`, e.g. /worker/test_input.json) the worker runs once ComfyUI answers
    and before it takes jobs, so the first job finds its models loaded."""
    ready_poll_interval_s: float = setting("COMFY_READY_POLL_INTERVAL_S", _positive_float, 0.01)
    """How often to probe ComfyUI while it starts."""
    ready_timeout_s: float = setting("COMFY_READY_TIMEOUT_S", _positive_float, 600.0)
    """Give up on a live ComfyUI that never answers after this many seconds."""

    jobs_in_flight: int = setting("JOBS_IN_FLIGHT", _jobs_in_flight, 2)
    """How many jobs this worker takes at once: each is prepared as soon as it is taken and waits in
    ComfyUI's queue, so the GPU never waits between jobs. 1 takes the next job only after a result."""
    job_timeout_s: float = setting("JOB_TIMEOUT_S", _positive_float, 570.0)
    """Default limit on a workflow's run, in seconds, counted from the prompt's start in ComfyUI; a job
    may set its own `timeout_s`."""
    job_timeout_max_s: float = setting("JOB_TIMEOUT_MAX_S", _positive_float, 3600.0)
    """The largest `timeout_s` a job may ask for."""
    event_silence_check_s: float = setting("EVENT_SILENCE_CHECK_S", _positive_float, 5.0)
    """After this many seconds without an event of the running prompt, read its history: a prompt
    whose events were lost (a dropped or frozen websocket) still ends when ComfyUI finishes it."""
    stop_grace_s: float = setting("STOP_GRACE_S", _positive_float, 10.0)
    """After interrupting a prompt (timeout, cancel), how long to wait for ComfyUI to stop it
    before cleaning up."""
    progress_updates_per_s: float = setting("PROGRESS_UPDATES_PER_S", _positive_float, 2.0)
    """Most progress updates a second; node changes and a sampler's first and last step always go."""
    progress_preview_max_bytes: int = setting("PROGRESS_PREVIEW_MAX_BYTES", _positive_int, 65536)
    """Previews larger than this are left out of progress updates."""
    progress_webhook_secret: str | None = setting("PROGRESS_WEBHOOK_SECRET", str, None, secret=True)
    """Key that signs every POST to a job's `progress_webhook` (HMAC-SHA256, the `Webhook-Signature`
    header); without it, jobs that ask for a webhook are refused (never logged)."""
    progress_webhook_timeout_s: float = setting("PROGRESS_WEBHOOK_TIMEOUT_S", _positive_float, 5.0)
    """Time limit of each POST to a job's `progress_webhook`; a slower receiver misses that update."""

    max_response_bytes: int = setting("MAX_RESPONSE_BYTES", _positive_int, 9_000_000)
    """Largest result returned inline; larger goes to the bucket or fails with `output_too_large`
    (RunPod refuses results over about 10 MB)."""
    input_max_bytes: int = setting("INPUT_MAX_BYTES", _positive_int, 200 * 1024 * 1024)
    """Largest input file fetched from a URL."""
    input_url_timeout_s: float = setting("INPUT_URL_TIMEOUT_S", _positive_float, 60.0)
    """Time limit for fetching one input URL."""
    bucket_endpoint_url: str | None = setting("BUCKET_ENDPOINT_URL", _http_url, None)
    """S3-compatible endpoint; setting it sends outputs to the bucket."""
    bucket_access_key_id: str | None = setting("BUCKET_ACCESS_KEY_ID", str, None)
    """The bucket's access key id."""
    bucket_secret_access_key: str | None = setting("BUCKET_SECRET_ACCESS_KEY", str, None, secret=True)
    """The bucket's secret key (never logged)."""
    bucket_name: str | None = setting("BUCKET_NAME", str, None)
    """The bucket; default: the first label of the endpoint's host, as RunPod's SDK reads it."""
    bucket_prefix: str = setting("BUCKET_PREFIX", str, "")
    """Key prefix: keys are `<prefix><job id>/<subfolder>/<file name>`."""
    bucket_region: str | None = setting("BUCKET_REGION", str, None)
    """Signing region, for stores that need one."""
    bucket_url_expiry_s: int = setting("BUCKET_URL_EXPIRY_S", _url_expiry, 7 * 24 * 3600)
    """Lifetime of the returned presigned URLs (S3 allows at most 7 days)."""
    bucket_timeout_s: float = setting("BUCKET_TIMEOUT_S", _positive_float, 30.0)
    """Connect and read timeout of each bucket request (two attempts): a stalled store fails the
    job with `storage_error` instead of holding it for minutes."""
    submit_records_dir: Path | None = setting("SUBMIT_RECORDS_DIR", Path, None)
    """Where the records of jobs with an `idempotency_key` are kept when the job has no bucket (its own
    or the worker's, which come first). start.sh sets /runpod-volume/comfy-worker/submits when a network
    volume is mounted. With neither, a key is not kept and a retried submit may run twice."""

    @property
    def model_cache_max_bytes(self) -> int:
        return int(self.model_cache_max_gb * 10**9)

    @property
    def model_download_max_bytes(self) -> int:
        return int(self.model_download_max_gb * 10**9)

    @property
    def bucket_configured(self) -> bool:
        return bool(self.bucket_endpoint_url)

    @property
    def nodes_snapshot_path(self) -> Path | None:
        if self.nodes_snapshot.strip().lower() == "off":
            return None
        return Path(self.nodes_snapshot) if self.nodes_snapshot else self.comfyui_path / "worker-object-info.json"

    @property
    def comfy_http_url(self) -> str:
        return f"http://{self.comfy_host}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name, parse = field.metadata["env"], field.metadata["parse"]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[field.name] = parse(raw)
            except ValueError as exc:
                shown = "<hidden>" if not field.repr else repr(raw)
                raise ValueError(f"setting {name}={shown} is invalid: {exc}") from None
        settings = cls(**values)
        if settings.bucket_endpoint_url and not settings.bucket_name:
            host = urlparse(settings.bucket_endpoint_url).hostname or ""
            settings = replace(settings, bucket_name=host.split(".")[0])
        if settings.job_timeout_s > settings.job_timeout_max_s:
            raise ValueError("setting JOB_TIMEOUT_S must not exceed JOB_TIMEOUT_MAX_S")
        return settings

    @classmethod
    def variables(cls) -> dict[str, Any]:
        """Environment variable -> default, for every setting (docs/deploy.md's table is checked against it)."""
        return {field.metadata["env"]: field.default for field in dataclasses.fields(cls)}
