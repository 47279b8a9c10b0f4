"""Every name of the RunPod SDK that the worker uses beyond `runpod.serverless.start`
and `progress_update`, public and private, in one place.

Contract: the rest of the package imports these from here, never from `runpod.*`
directly. `runpod==1.12.0` is pinned (requirements.txt); the private names below are
internals of that version, and runpod 2.0 moves the worker code to a package of its
own. `check()` runs at start-up (rp_handler.py) and raises `SDKMismatch` naming each
name that is missing and the version it was written for, so an upgrade fails at once
and clearly instead of in the middle of a job. Importing this module imports nothing of
the SDK (each name is loaded when first used) and never fails on a missing name: `check()`
is where that is reported.

What each is for:
- Pinned connections (`downloads.py`): the building blocks of the SDK's `safe_get` that
  connect to an address already checked (the first reachable of them), the redirect
  statuses and the session hand-over, which `downloads` drives hop by hop so that each
  host gets only its own headers. Which addresses may be reached, and the refusals, are
  the worker's own (`downloads.is_public_address`, `DownloadRefused`).
- Ordered progress (`runpod_progress.py`): `send_result` and `AsyncClientSession`,
  the request `progress_update` makes, over one kept-open session.
- Logging (rp_handler.py): `RunPodLogger`, whose default level logs every job's input.
- When to take and start jobs (`job_take.py`): `JobScaler`, whose `get_jobs` and `run_jobs`
  are replaced and whose `handle_job` is wrapped (each checked by name and parameters), and
  `TooManyRequests`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

WRITTEN_FOR = "runpod 1.12.0"

# (module, name) -> what this package calls it
_NAMES = {
    ("runpod.serverless.utils.rp_ssrf", "_get_via_first_reachable_ip"): "get_via_first_reachable_ip",
    ("runpod.serverless.utils.rp_ssrf", "_REDIRECT_STATUS"): "REDIRECT_STATUS",
    ("runpod.serverless.utils.rp_ssrf", "_close_session_quietly"): "close_session_quietly",
    ("runpod.serverless.utils.rp_ssrf", "_bind_session_to_response"): "bind_session_to_response",
    ("runpod.serverless.modules.rp_http", "send_result"): "send_result",
    ("runpod.http_client", "AsyncClientSession"): "AsyncClientSession",
    ("runpod.serverless.modules.rp_logger", "RunPodLogger"): "RunPodLogger",
    ("runpod.serverless.modules.rp_scale", "JobScaler"): "JobScaler",
    ("runpod.http_client", "TooManyRequests"): "TooManyRequests",
}
# JobScaler's methods that job_take.py calls, replaces or wraps, with their parameters.
_JOB_SCALER_METHODS = {
    "get_jobs": ["self", "session"],
    "run_jobs": ["self", "session"],
    "handle_job": ["self", "session", "job"],
    "set_scale": ["self"],
    "current_occupancy": ["self"],
    "is_alive": ["self"],
}


class SDKMismatch(RuntimeError):
    """The installed RunPod SDK lacks names this worker was written against."""


def _load(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _changed_methods(scaler: Any) -> list[str]:
    changed = []
    for method, parameters in _JOB_SCALER_METHODS.items():
        function = getattr(scaler, method, None)
        if function is None or list(inspect.signature(function).parameters) != parameters:
            changed.append(f"runpod.serverless.modules.rp_scale.JobScaler.{method}({', '.join(parameters[1:])})")
    return changed


def check() -> None:
    missing = [f"{module}.{name}" for (module, name) in _NAMES if _load(module, name) is None]
    scaler = _load("runpod.serverless.modules.rp_scale", "JobScaler")
    missing += _changed_methods(scaler) if scaler is not None else []
    if missing:
        raise SDKMismatch(
            f"the installed RunPod SDK lacks {', '.join(missing)}; this worker was written for {WRITTEN_FOR} "
            "(pinned in requirements.txt): install that version, or update comfy_worker/core/runpod_sdk.py"
        )


_ALIASES = {alias: where for where, alias in _NAMES.items()}


def __getattr__(alias: str) -> Any:
    """Each name is imported from the SDK when first used, so importing this module (and the
    rooms that use it) imports no SDK code: the SDK's modules set a log format when imported."""
    if alias not in _ALIASES:
        raise AttributeError(f"module {__name__!r} has no attribute {alias!r}")
    value = _load(*_ALIASES[alias])
    globals()[alias] = value
    return value
