"""Worker settings, read once from the environment.

Contract: `Settings.from_env(mapping)` returns a frozen, validated value or raises
`ValueError` naming the variable and what is wrong. Every field is documented in
README.md ("Settings") with its environment variable and default; tests pass
plain dicts instead of touching os.environ.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class Settings:
    comfy_host: str = "127.0.0.1:8188"
    """COMFY_HOST: host:port of the ComfyUI server."""
    comfyui_path: Path = Path("/comfyui")
    """COMFYUI_PATH: ComfyUI's folder; its input/, output/ and temp/ hold job files."""
    comfy_pid_file: Path = Path("/tmp/comfyui.pid")
    """COMFY_PID_FILE: written by start.sh; while that process lives, the worker keeps waiting."""
    ready_poll_interval_s: float = 0.1
    """COMFY_READY_POLL_INTERVAL_S: how often to probe ComfyUI while it starts."""
    ready_timeout_s: float = 600.0
    """COMFY_READY_TIMEOUT_S: give up waiting for a live but unresponsive ComfyUI after this."""

    job_timeout_s: float = 570.0
    """JOB_TIMEOUT_S: default limit on a workflow's run; a job may ask for less or more (timeout_s)."""
    job_timeout_max_s: float = 3600.0
    """JOB_TIMEOUT_MAX_S: the most a job may ask for."""
    stop_grace_s: float = 10.0
    """STOP_GRACE_S: after interrupting a prompt, how long to wait for it to end before cleaning up."""
    progress_updates_per_s: float = 2.0
    """PROGRESS_UPDATES_PER_S: most progress updates a second (a sampler's first and last step always go)."""
    progress_preview_max_bytes: int = 65536
    """PROGRESS_PREVIEW_MAX_BYTES: larger preview images are left out of progress updates."""

    max_response_bytes: int = 9_000_000
    """MAX_RESPONSE_BYTES: largest result returned inline (RunPod refuses results over ~10 MB)."""
    input_max_bytes: int = 200 * 1024 * 1024
    """INPUT_MAX_BYTES: largest input file fetched from a URL."""
    input_url_timeout_s: float = 60.0
    """INPUT_URL_TIMEOUT_S: time limit for fetching one input URL."""
    bucket_endpoint_url: str | None = None
    """BUCKET_ENDPOINT_URL: S3-compatible endpoint; setting it turns uploads on."""
    bucket_access_key_id: str | None = None
    """BUCKET_ACCESS_KEY_ID."""
    bucket_secret_access_key: str | None = field(default=None, repr=False)
    """BUCKET_SECRET_ACCESS_KEY (never logged: excluded from repr)."""
    bucket_name: str | None = None
    """BUCKET_NAME: default, the first label of the endpoint's host, as RunPod's SDK reads it."""
    bucket_prefix: str = ""
    """BUCKET_PREFIX: key prefix; keys are <prefix><job id>/<file name>."""
    bucket_region: str | None = None
    """BUCKET_REGION: region for signing, if the endpoint needs one."""
    bucket_url_expiry_s: int = 7 * 24 * 3600
    """BUCKET_URL_EXPIRY_S: lifetime of the presigned URLs returned (S3 allows at most 7 days)."""

    @property
    def bucket_configured(self) -> bool:
        return bool(self.bucket_endpoint_url)

    @property
    def comfy_http_url(self) -> str:
        return f"http://{self.comfy_host}"

    @property
    def input_dir(self) -> Path:
        return self.comfyui_path / "input"

    @property
    def output_dir(self) -> Path:
        return self.comfyui_path / "output"

    @property
    def temp_dir(self) -> Path:
        return self.comfyui_path / "temp"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()

        def read(name: str, parse: Callable, default):
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = parse(raw)
            except ValueError as exc:
                raise ValueError(f"setting {name}={raw!r} is invalid: {exc}") from None
            return value

        settings = cls(
            comfy_host=read("COMFY_HOST", _host_port, defaults.comfy_host),
            comfyui_path=read("COMFYUI_PATH", Path, defaults.comfyui_path),
            comfy_pid_file=read("COMFY_PID_FILE", Path, defaults.comfy_pid_file),
            ready_poll_interval_s=read("COMFY_READY_POLL_INTERVAL_S", _positive_float, defaults.ready_poll_interval_s),
            ready_timeout_s=read("COMFY_READY_TIMEOUT_S", _positive_float, defaults.ready_timeout_s),
            job_timeout_s=read("JOB_TIMEOUT_S", _positive_float, defaults.job_timeout_s),
            job_timeout_max_s=read("JOB_TIMEOUT_MAX_S", _positive_float, defaults.job_timeout_max_s),
            stop_grace_s=read("STOP_GRACE_S", _positive_float, defaults.stop_grace_s),
            progress_updates_per_s=read("PROGRESS_UPDATES_PER_S", _positive_float, defaults.progress_updates_per_s),
            progress_preview_max_bytes=read(
                "PROGRESS_PREVIEW_MAX_BYTES", _positive_int, defaults.progress_preview_max_bytes
            ),
            max_response_bytes=read("MAX_RESPONSE_BYTES", _positive_int, defaults.max_response_bytes),
            input_max_bytes=read("INPUT_MAX_BYTES", _positive_int, defaults.input_max_bytes),
            input_url_timeout_s=read("INPUT_URL_TIMEOUT_S", _positive_float, defaults.input_url_timeout_s),
            bucket_endpoint_url=read("BUCKET_ENDPOINT_URL", _http_url, None),
            bucket_access_key_id=read("BUCKET_ACCESS_KEY_ID", str, None),
            bucket_secret_access_key=read("BUCKET_SECRET_ACCESS_KEY", str, None),
            bucket_name=read("BUCKET_NAME", str, None),
            bucket_prefix=read("BUCKET_PREFIX", str, ""),
            bucket_region=read("BUCKET_REGION", str, None),
            bucket_url_expiry_s=read("BUCKET_URL_EXPIRY_S", _url_expiry, defaults.bucket_url_expiry_s),
        )
        if settings.bucket_endpoint_url and not settings.bucket_name:
            settings = replace(settings, bucket_name=urlparse(settings.bucket_endpoint_url).hostname.split(".")[0])
        if settings.job_timeout_s > settings.job_timeout_max_s:
            raise ValueError("setting JOB_TIMEOUT_S must not exceed JOB_TIMEOUT_MAX_S")
        return settings


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive whole number")
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
