"""Job input: the schema, and the pure function that parses a RunPod job's `input`.

Contract: `parse_job_input(raw)` returns a frozen `JobInput` (its `workflow` a
`Workflow` value) or raises `InvalidJobInput` listing every problem with its field
path (`input.images[0].image`). No I/O. The shape is compatible with runpod-workers/worker-comfyui:

    {"workflow": {<node id>: {"class_type": str, "inputs": {...}}, ...},
     "images": [{"name": "x.png", "image": "<base64, data URI or http(s) URL>", "subfolder": "<optional>"}],
     "comfy_org_api_key": "<optional, for Comfy.org API nodes>",
     "timeout_s": <optional seconds, at most JOB_TIMEOUT_MAX_S>,
     "preview": <optional bool: latent previews in progress updates>,
     "output": {"format": "png|webp|jpeg", "quality": 1-100, "storage": "auto|base64|s3",
                "include_previews": <bool>},
     "storage": {<optional: the job's own bucket, see JobStorage>},
     "progress_webhook": "<optional http(s) URL: progress and the final state POSTed there, signed>",
     "extra_pnginfo": {<optional: metadata saved images carry, e.g. "workflow": the UI graph>}}

`images` takes any input file (videos and audio for their loaders too); the name
is worker-comfyui's. A file may also be an `s3://bucket/key` reference, read with
the job's `storage` credentials, else the worker's bucket settings. URLs are checked
here only for form: fetching (with its SSRF guard) happens when inputs are prepared.

Instead of a graph in `workflow`, a job may name a workflow shipped with the worker
(`named_workflows.py`) or ask what the worker offers:

    {"workflow_name": "txt2img", "params": {"prompt": "...", "seed": 7}, ...}
    {"list": "workflows"} | {"list": "models"} | {"list": "nodes"} | {"list": "openapi"}
    {"result_of": "<an idempotency key>"}   # the result its job left (transfer/submits.py)
    {"replay": <a result's provenance>}     # that graph again, if this worker matches (models/provenance.py)

and with any workflow, `"randomize_seeds": true` gives every seed input a new random
value (the result reports the seeds used), and `"validate_only": true` checks the job
against the worker's ComfyUI without running it (`ComfyCapabilities.check`);
`"idempotency_key": "<one per logical submit>"` makes a submit sent twice run once
(`transfer/submits.py`: the input's `fingerprint()` must match). A model loader's input may name a model by
URL or `hf://` reference (`remote_models.py`); `model_credentials` carries a Hugging
Face token and per-host headers for private ones.

`input` may also arrive as a JSON string. A workflow saved in ComfyUI's UI format
(it has `nodes` and `links`) is kept as `ui_workflow` for the worker to convert
(`ui_format.py`): that needs ComfyUI's node definitions, which a pure parser lacks.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from ..core.errors import InvalidJobInput
from ..core.sources import FileSource, check_url, file_source
from .ui_format import is_ui_format
from .workflow import Workflow

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_BYTES = 255  # the longest file name Linux file systems store
# Deeper than any real workflow (an API graph is ~6 levels, a UI graph ~10), and far
# below Python's recursion limit, which the validators and ComfyUI itself recurse into.
MAX_NESTING = 64
MAX_KEY_CHARS = 255  # an idempotency key: a UUID or a caller's own id fits many times over
NO_BUCKET_FOR_S3 = (
    "is 's3' but this endpoint has no bucket (set BUCKET_ENDPOINT_URL and keys, or give the job its own 'storage')"
)


def check_name_part(part: str, what: str) -> None:
    """A file or folder name must fit the file system and be safe to show in a log line."""
    if _CONTROL.search(part):
        raise ValueError(f"{what} contains a control character (such as a line break)")
    if len(part.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"{what} is {len(part.encode())} bytes long; at most {MAX_NAME_BYTES} bytes (UTF-8) fit")


FileField = Annotated[
    FileSource,
    PlainValidator(file_source),
    WithJsonSchema(
        {"type": "string", "description": "base64, a data URI, an http(s) URL or an s3://bucket/key reference"}
    ),
]
"""A file-valued field of a job: parsed into its source once, where the job is parsed."""


class InputFile(BaseModel):
    """A file to place in ComfyUI's input folder before the prompt runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    image: FileField
    subfolder: str = ""

    @field_validator("name")
    @classmethod
    def _plain_file_name(cls, name: str) -> str:
        if not name or name in {".", ".."} or "/" in name or "\\" in name:
            raise ValueError("must be a plain file name such as 'photo.png' (no folders, no '..')")
        check_name_part(name, "the name")
        return name

    @field_validator("subfolder")
    @classmethod
    def _relative_folder(cls, subfolder: str) -> str:
        parts = subfolder.strip("/").split("/")
        if subfolder.startswith("/") or "\\" in subfolder or ".." in parts or "." in parts:
            raise ValueError("must be a relative folder inside ComfyUI's input folder (no '..', no leading '/')")
        for part in parts:
            check_name_part(part, f"the folder name '{part[:40]}'")
        return subfolder.strip("/")

    def field(self, index: int) -> str:
        """Where the job gave this file, for error messages."""
        return f"input.images[{index}].image"


class OutputOptions(BaseModel):
    """How outputs come back: still-image format, inline or via the bucket, previews."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["png", "webp", "jpeg"] = "png"
    quality: int = Field(default=90, ge=1, le=100, strict=True)
    storage: Literal["auto", "base64", "s3"] = "auto"
    include_previews: bool = Field(default=False, strict=True)


class JobStorage(BaseModel):
    """A bucket of the job's own (S3-compatible): its outputs go there instead of the
    worker's bucket, and its s3:// inputs are read with these credentials. Used for
    this job only; the secrets are never logged or returned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_url: str
    bucket: str = Field(min_length=1, max_length=255)
    access_key_id: SecretStr
    secret_access_key: SecretStr
    region: str | None = Field(default=None, min_length=1)
    prefix: str = ""
    url_expiry_s: int | None = Field(default=None, ge=1, le=7 * 24 * 3600, strict=True)

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                "must be an http(s) URL of an S3-compatible endpoint, e.g. https://s3.us-east-1.amazonaws.com"
            )
        return check_url(url)

    @field_validator("bucket", "prefix")
    @classmethod
    def _printable(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must not hold control characters")
        return value


class ModelCredentials(BaseModel):
    """Credentials for private model sources, each used only for its own host (secrets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    huggingface_token: SecretStr | None = None
    headers: dict[str, dict[str, SecretStr]] = Field(
        default_factory=dict, description="host -> headers sent only to that host, e.g. Authorization"
    )

    @field_validator("headers")
    @classmethod
    def _hosts_are_names(cls, headers: dict[str, dict[str, SecretStr]]) -> dict[str, dict[str, SecretStr]]:
        for host in headers:
            if not host or "/" in host or ":" in host or " " in host:
                raise ValueError(f"keys are host names such as 'models.example.com', not {host[:60]!r}")
        return {host.lower(): values for host, values in headers.items()}


class RecordedRun(BaseModel):
    """A result's `provenance`, sent back as `replay`: the graph that ran and what it ran on,
    checked against this worker before it runs again."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    comfyui: dict[str, str | None]
    node_packs: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str | None] = Field(default_factory=dict)
    workflow: Workflow


class JobInput(BaseModel):
    """A job's validated input: a graph (API or UI format), a named workflow with its
    parameters, or a `list` question. Exactly one of `workflow`, `ui_workflow`,
    `workflow_name` and `list` is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow: Workflow | None = None
    ui_workflow: dict[str, Any] | None = Field(default=None, description="set by parse_job_input")
    workflow_name: str | None = Field(default=None, min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    randomize_seeds: bool = Field(default=False, strict=True)
    list_what: Literal["workflows", "models", "nodes", "openapi"] | None = Field(default=None, alias="list")
    replay: RecordedRun | None = Field(default=None, description="a result's provenance: run it again, unchanged")
    result_of: str | None = Field(
        default=None, min_length=1, max_length=MAX_KEY_CHARS, description="an idempotency_key: its job's result"
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="one per logical submit: a job sent again with it returns the first job's result",
    )
    validate_only: bool = Field(default=False, strict=True)
    images: list[InputFile] = Field(default_factory=list)
    model_credentials: ModelCredentials = Field(default_factory=ModelCredentials)
    comfy_org_api_key: SecretStr | None = None
    timeout_s: float | None = Field(default=None, gt=0, strict=True, allow_inf_nan=False)
    preview: bool = Field(default=False, strict=True)
    output: OutputOptions = Field(default_factory=OutputOptions)
    storage: JobStorage | None = None
    progress_webhook: str | None = Field(default=None, max_length=2048)
    extra_pnginfo: dict[str, Any] | None = None

    _raw: dict[str, Any] | None = PrivateAttr(default=None)  # as sent, kept by parse_job_input for `fingerprint`

    def fingerprint(self) -> str:
        """The SHA-256 of the input as sent, less its `idempotency_key` (canonical JSON), which a
        second submit with the key must match. Blocking: ~3 ms a MB, so call it off the event loop."""
        assert self._raw is not None, "made by parse_job_input"
        return input_fingerprint(self._raw)

    @field_validator("result_of", "idempotency_key")
    @classmethod
    def _printable_key(cls, key: str | None) -> str | None:
        if key is not None and _CONTROL.search(key):
            raise ValueError("must not hold control characters (such as a line break)")
        return key

    @field_validator("progress_webhook")
    @classmethod
    def _webhook_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL that receives the job's progress as POSTs")
        return check_url(url) if url is not None else None

    @model_validator(mode="after")
    def _one_request(self) -> JobInput:
        requests = {
            "workflow": self.workflow or self.ui_workflow,
            "workflow_name": self.workflow_name,
            "list": self.list_what,
            "result_of": self.result_of,
            "replay": self.replay,
        }
        given = [name for name, value in requests.items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'workflow' (a graph), 'workflow_name' (with 'params'), 'list', 'result_of' "
                "or 'replay' (a result's provenance)" + (f"; got {' and '.join(given)}" if given else "")
            )
        if self.replay is not None and self.randomize_seeds:
            raise ValueError("'replay' runs the recorded seeds: 'randomize_seeds' cannot go with it")
        if self.params and self.workflow_name is None:
            raise ValueError("'params' go with 'workflow_name' (a named workflow); a graph carries its own values")
        return self

    @field_validator("timeout_s")
    @classmethod
    def _within_max(cls, timeout_s: float | None, info: ValidationInfo) -> float | None:
        max_timeout_s = (info.context or {}).get("max_timeout_s")
        if timeout_s is not None and max_timeout_s is not None and timeout_s > max_timeout_s:
            raise ValueError(f"must be at most {max_timeout_s:g} (JOB_TIMEOUT_MAX_S)")
        return timeout_s

    @field_validator("images")
    @classmethod
    def _unique_names(cls, images: list[InputFile]) -> list[InputFile]:
        names = [f"{image.subfolder}/{image.name}".lstrip("/") for image in images]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"file names must be unique; repeated: {', '.join(duplicates)}")
        return images

    def extra_data(self) -> dict[str, Any]:
        """POST /prompt's extra_data: the Comfy.org key for API nodes, if the job gave one, and
        the metadata saved images carry (ComfyUI's extra_pnginfo): the job's, else the UI graph
        the job sent, so that an output dropped onto the editor opens its workflow, as after a
        run in the editor."""
        extra: dict[str, Any] = {}
        if self.comfy_org_api_key is not None:
            extra["api_key_comfy_org"] = self.comfy_org_api_key.get_secret_value()
        pnginfo = self.extra_pnginfo
        if pnginfo is None and self.ui_workflow is not None:
            pnginfo = {"workflow": self.ui_workflow}
        if pnginfo:
            extra["extra_pnginfo"] = pnginfo
        return extra


def parse_job_input(raw: Any, max_timeout_s: float | None = None, has_bucket: bool = True) -> JobInput:
    """The job's `input` as a `JobInput`, or `InvalidJobInput` listing every problem.
    `max_timeout_s` (JOB_TIMEOUT_MAX_S) bounds `timeout_s`; without a bucket
    (`has_bucket` False), `"storage": "s3"` is refused."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidJobInput(
                [("input", f"is a string but not valid JSON ({exc.msg} at position {exc.pos})")]
            ) from None
        except RecursionError:
            raise InvalidJobInput([("input", f"is a JSON string nested deeper than {MAX_NESTING} levels")]) from None
    too_deep = first_too_deep(raw, MAX_NESTING)
    if too_deep is not None:
        raise InvalidJobInput(
            [(field_path(too_deep), f"is nested deeper than {MAX_NESTING} levels of lists and objects")]
        )
    if not isinstance(raw, dict):
        raise InvalidJobInput([("input", f"must be an object, got {type(raw).__name__}")])
    if not any(key in raw for key in ("workflow", "workflow_name", "list", "result_of", "replay")):
        raise InvalidJobInput(
            [("input.workflow", "is required (or name a shipped workflow with 'workflow_name', or ask 'list')")]
        )
    sent = raw
    if "ui_workflow" in raw:
        raise InvalidJobInput([("input.ui_workflow", "is not a known field (send a UI-format graph as 'workflow')")])
    if is_ui_format(raw.get("workflow")):
        # Converted by the worker, which knows ComfyUI's nodes (ui_format.py).
        raw = {**raw, "ui_workflow": raw["workflow"]}
        del raw["workflow"]
    try:
        job_input = JobInput.model_validate(raw, context={"max_timeout_s": max_timeout_s})
    except ValidationError as exc:
        raise InvalidJobInput([(field_path(err["loc"]), problem_text(err)) for err in exc.errors()]) from None
    graph = job_input.workflow or (job_input.replay.workflow if job_input.replay is not None else None)
    problems = graph.link_problems() if graph is not None else []
    if job_input.output.storage == "s3" and not has_bucket and job_input.storage is None:
        problems.append(("input.output.storage", NO_BUCKET_FOR_S3))
    if problems:
        raise InvalidJobInput(problems)
    job_input._raw = sent
    return job_input


def input_fingerprint(raw: dict[str, Any]) -> str:
    """SHA-256 of the input without its idempotency key, as canonical JSON: the same submit
    sent again has the same fingerprint, whatever order its keys came in."""
    rest = {key: value for key, value in raw.items() if key != "idempotency_key"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def first_too_deep(value: Any, limit: int) -> tuple[int | str, ...] | None:
    """The path to the first list or object nested more than `limit` levels deep, or None.
    Iterative, so that a hostile input cannot exhaust the stack it is checked with."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            children: Any = item.items()
        elif isinstance(item, list):
            children = enumerate(item)
        else:
            continue
        if len(path) >= limit:
            return path
        stack.extend((child, (*path, key)) for key, child in children)
    return None


def field_path(loc: tuple[int | str, ...]) -> str:
    path = "input"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def problem_text(err: ErrorDetails) -> str:
    message = err["msg"]
    # pydantic prefixes messages raised in validators with "Value error, ".
    message = message.removeprefix("Value error, ")
    if err["type"] == "missing":
        return "is required"
    if err["type"] == "extra_forbidden":
        return "is not a known field"
    return message[0].lower() + message[1:] if message else err["type"]
