"""The worker's errors, and the one place they become a job's result.

    WorkerError                 anything the worker reports as a failed job
    ├── InvalidJobInput         the job's input does not match the schema (every problem listed)
    ├── ComfyUnavailable        ComfyUI died or never answered; the worker asks to be replaced
    ├── ModelDownloadFailed     a model the workflow names by URL or hf:// could not be fetched
    ├── ComfyError              a live ComfyUI answered with an error that is not the workflow's
    ├── WorkflowRejected        ComfyUI refused the prompt (POST /prompt 400), per node
    ├── ExecutionFailed         a node raised while the workflow ran
    │   └── PromptInterrupted   the prompt was interrupted (by the worker's stop, or by someone else)
    ├── JobTimedOut             the workflow ran past the job's timeout and was stopped
    ├── OutputTooLarge          the result would exceed RunPod's limit and no bucket can take it
    ├── OutputUnreadable        an output file could not be read or converted
    ├── UnsafePath              ComfyUI named a file outside its job folders; nothing was touched
    ├── StorageError            uploading an output to the bucket failed
    ├── DiskFull                a disk of the worker's is full (the job's input or output files)
    ├── WorkerShutDown          the worker was stopped (RunPod scaling down) before the job ended
    ├── SubmitPending           the first job of this idempotency key still runs (or a lookup found it running)
    ├── UnknownSubmit           no record of a submit with this idempotency key
    ├── ReplayRefused           a replay would not run the same way here (another ComfyUI, model...)
    └── InternalError           anything else: a bug; the traceback is logged once

Each external edge translates its own library's exceptions where it calls it:
`comfy_client` (aiohttp), `downloads` (requests, its own address refusals),
`storage` (boto3). `Worker.run_job` is the last resort: a `WorkerError` becomes
its result through `error_result`, and any other exception becomes an
`InternalError` there; `guarded` runs a clean-up step so that its failure is logged,
never raised. RunPod marks a job FAILED when the result has a string
`error`; the other keys land in the job's `output`, so clients also get
`error_type` and structured `details`.
"""

from __future__ import annotations

import errno
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

LISTED_PROBLEMS = 20  # an invalid input's problems listed in its result; the rest are counted
# An error result stays far below RunPod's result limit (~20 MB) whatever it quotes (a
# node's message, a traceback's lines): its message and details are cut to these sizes.
ERROR_MESSAGE_MAX_CHARS = 8_000
ERROR_DETAILS_MAX_BYTES = 200_000


class WorkerError(Exception):
    """Base class. `message` is for people, `details` for programs."""

    error_type = "worker_error"
    refresh_worker = False

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidJobInput(WorkerError):
    """The job input failed validation; `details["problems"]` lists `{"field", "problem"}`,
    the first LISTED_PROBLEMS of them (`details["more_problems"]` counts the rest), so a
    graph with thousands of faults still gets a result of readable size."""

    error_type = "invalid_input"

    def __init__(self, problems: list[tuple[str, str]]):
        listed = problems[:LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        lines = [f"{field}: {problem}" for field, problem in listed]
        message = "invalid job input: " + "; ".join(lines) + (f"; and {more} more problem(s)" if more else "")
        details: dict[str, Any] = {"problems": [{"field": field, "problem": problem} for field, problem in listed]}
        if more:
            details["more_problems"] = more
        super().__init__(message, details)


class ComfyUnavailable(WorkerError):
    """ComfyUI is not running or not answering. The worker cannot heal this itself,
    so the result asks RunPod to replace it (refresh_worker)."""

    error_type = "comfyui_unavailable"
    refresh_worker = True


class ComfyError(WorkerError):
    """ComfyUI is alive but answered a request with an error status or with something
    that is not its API's answer. The worker keeps serving (no replacement): the next
    job may well succeed. `details` has the request and the status."""

    error_type = "comfyui_error"


class ModelDownloadFailed(WorkerError):
    """A model named by URL or Hugging Face reference could not be fetched (refused
    address, too large, hash mismatch, 404, not a safetensors file, ...). `details` has
    node_id, input, source (without query string or credentials) and reason."""

    error_type = "model_download_failed"


class WorkflowRejected(WorkerError):
    """ComfyUI's validation refused the prompt. `details["node_errors"]` has one entry
    per error: node_id, class_type, title (when known), type, message, details, input;
    a value that is not installed also has `missing` (value, folder, closest, searched,
    and `installed` when the folder holds ten files or fewer)."""

    error_type = "workflow_rejected"

    @classmethod
    def from_comfy(cls, comfy_error: dict[str, Any], node_errors: list[dict[str, Any]]) -> WorkflowRejected:
        if node_errors:
            message = "workflow rejected by ComfyUI: " + "; ".join(map(_node_error_text, node_errors))
        else:
            message = f"workflow rejected by ComfyUI: {comfy_error.get('message') or 'no reason given'}"
            if comfy_error.get("details"):
                message += f" ({comfy_error['details']})"
        return cls(message, {"comfy_error": comfy_error, "node_errors": node_errors})

    @property
    def node_errors(self) -> list[dict[str, Any]]:
        return list(self.details.get("node_errors") or [])


def _node_error_text(error: dict[str, Any]) -> str:
    title = f" '{error['title']}'" if error.get("title") and error["title"] != error.get("class_type") else ""
    text = f"node {error['node_id']}{title} ({error.get('class_type')})"
    if error.get("input"):
        text += f" input '{error['input']}'"
    missing = error.get("missing")
    if missing:
        text += f": '{missing['value']}' " + (
            "is not installed" if missing.get("folder") else "is not one of its choices"
        )
        if missing["closest"]:
            text += f"; closest: {', '.join(repr(n) for n in missing['closest'])}"
        elif missing.get("installed"):
            text += f"; none is close; installed: {', '.join(repr(n) for n in missing['installed'])}"
        elif "installed" in missing:
            text += "; none is installed" + (f" in {missing['folder']}" if missing.get("folder") else "")
        else:
            text += "; none is close"
        if missing.get("searched"):
            text += f"; searched {', '.join(missing['searched'])}"
        return text
    return text + f": {error.get('message')}" + (f" - {error['details']}" if error.get("details") else "")


class ExecutionFailed(WorkerError):
    """A node raised during execution. `details` has node_id, node_type,
    exception_type, exception_message and ComfyUI's traceback lines."""

    error_type = "execution_failed"


class PromptInterrupted(ExecutionFailed):
    """The prompt was interrupted (by the worker's stop, or by someone else)."""

    error_type = "interrupted"


class JobTimedOut(WorkerError):
    """The workflow ran longer than the job's timeout; ComfyUI was interrupted (or, if
    a node ignored that, restarted). When it could be neither, the worker asks to be
    replaced, since ComfyUI may still be busy."""

    error_type = "timeout"

    def __init__(self, message: str, details: dict[str, Any], refresh_worker: bool = False):
        super().__init__(message, details)
        self.refresh_worker = refresh_worker


class OutputTooLarge(WorkerError):
    """The outputs, as base64, exceed MAX_RESPONSE_BYTES and cannot go to a bucket.
    `details` has size_bytes and limit_bytes."""

    error_type = "output_too_large"


class OutputUnreadable(WorkerError):
    """An output ComfyUI reported could not be read or converted; `details` has
    node_id and filename."""

    error_type = "output_unreadable"


class UnsafePath(WorkerError):
    """ComfyUI (or a node) named a file outside the job folders (`..` in a subfolder,
    an absolute path). The worker neither reads nor deletes it; `details` has the path."""

    error_type = "unsafe_path"


class StorageError(WorkerError):
    """An upload to the S3-compatible bucket failed; `details` has bucket and key."""

    error_type = "storage_error"


class DiskFull(WorkerError):
    """A file of the job could not be written: its disk on the worker is full. `details` has
    the job's `field` (or the output's `node_id` and `filename`) and which `disk`."""

    error_type = "disk_full"


# An absolute path of two parts or more, not inside a URL (no ':' or '/' or word before it).
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/'\"]+/)+([^\s/'\"]*)")


def hide_paths(text: str) -> str:
    """The text with each absolute file path shortened to its last part (the file's name):
    a result never tells the worker's folders."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1) or "/", text)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class WorkerShutDown(WorkerError):
    """The worker was told to stop (SIGTERM: RunPod scaling it down) and the job did not end
    within the grace period (SHUTDOWN_GRACE_S); its prompt was interrupted. Sending it
    again runs it on another worker."""

    error_type = "worker_shut_down"
    refresh_worker = True


class SubmitPending(WorkerError):
    """A job's `idempotency_key` belongs to an earlier job that is still running: this job
    waited for it until its own timeout (or, for a `result_of` lookup, did not wait).
    `details` has the earlier `job_id`, whose /status has the result."""

    error_type = "submit_pending"


class UnknownSubmit(WorkerError):
    """A `result_of` lookup found no record of that idempotency key."""

    error_type = "unknown_submit"


class ReplayRefused(WorkerError):
    """A `replay` job's recorded run differs from what this worker has; `details.differences`
    names each difference (another ComfyUI, a node pack, a model file's hash). Nothing ran."""

    error_type = "replay_refused"


class InternalError(WorkerError):
    """An exception the worker did not expect (a bug). The message names the exception
    type only; the traceback goes to the worker's log, once."""

    error_type = "internal_error"

    @classmethod
    def from_exception(cls, exc: BaseException) -> InternalError:
        # An OSError's text names the worker's files: its reason alone (the log has the rest).
        said = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return cls(
            f"internal error in the worker: {type(exc).__name__}: {said} (the worker's log has the traceback)",
            {"exception_type": type(exc).__name__},
        )


def error_result(error: WorkerError) -> dict[str, Any]:
    """The handler's return value for a failed job, of bounded size: a message over
    ERROR_MESSAGE_MAX_CHARS is cut (saying so), details over ERROR_DETAILS_MAX_BYTES of JSON
    are replaced by a note."""
    message = error.message
    if len(message) > ERROR_MESSAGE_MAX_CHARS:
        message = (
            message[:ERROR_MESSAGE_MAX_CHARS] + f"... ({len(error.message) - ERROR_MESSAGE_MAX_CHARS} more characters)"
        )
    result: dict[str, Any] = {"error": message, "error_type": error.error_type}
    if error.details:
        size = len(json.dumps(error.details, default=str))
        result["details"] = (
            error.details if size <= ERROR_DETAILS_MAX_BYTES else {"omitted": f"the details were {size} bytes of JSON"}
        )
    if error.refresh_worker:
        result["refresh_worker"] = True
    return result


async def guarded(what: str, step: Callable[[], Awaitable[Any]]) -> None:
    """Run one clean-up step, logging (never raising) its failure, so that every step
    runs and none replaces the job's result."""
    try:
        await step()
    except WorkerError as error:
        log.warning("clean-up step failed (%s): %s", what, error.message)
    except Exception:
        log.exception("clean-up step failed (%s)", what)
