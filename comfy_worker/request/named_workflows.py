"""Named workflows shipped in the image, each called with a few typed parameters.

A job may send `{"workflow_name": "txt2img", "params": {"prompt": "...", "seed": 7}}`
instead of a whole graph. The folder (WORKFLOWS_DIR, default ComfyUI/workflows) holds:

    txt2img.json   the workflow as exported from ComfyUI (API or UI format)
    txt2img.toml   its parameter map (optional: without one the workflow runs as is)

A parameter map:

    description = "Text to image with the baked SD1.5 checkpoint."

    [params.prompt]
    node = "6"             # the node id; a list (["6", "7"]) sets the same input on each
    input = "text"         # the node's input the value goes to
    type = "string"        # string | int | float | bool | choice | model | image | video | audio
    description = "What the picture shows."
    # default = "..."      # left out: the workflow's own value is the default
    # min = 1, max = 100   # int and float bounds
    # choices = ["a", "b"] # choice; left out: the values ComfyUI offers for that input

A `model` parameter takes an installed file ComfyUI offers for that input, or a model
by URL or hf:// reference, fetched on demand (`remote_models.py`). A parameter whose
input holds no value in the workflow and has no default must be given.
image/video/audio parameters take what `images` takes (base64, a data URI, an http(s)
URL or an s3:// reference): the file is placed in ComfyUI's input folder and the input names it.

Contract: `WorkflowLibrary.load(folder, catalog)` reads every workflow once (at
start-up), converts UI-format ones, checks every parameter against its workflow and
ComfyUI's nodes, and raises `WorkflowLibraryError` naming the file and each problem.
`library.get(name)` returns the `NamedWorkflow` or `InvalidJobInput` listing the
names there are. `NamedWorkflow.apply(params)` validates the values with a pydantic
model built from the map (errors at `input.params.<name>`) and returns the graph to
run and the files to place. `describe()` gives each workflow's JSON Schema, for
`{"list": "workflows"}`.
"""

from __future__ import annotations

import functools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic.json_schema import JsonDict

from ..core.errors import InvalidJobInput
from ..core.sources import FileSource, Inline, file_source, is_reference
from .job_input import InputFile, field_path, problem_text
from .node_catalog import NodeCatalog
from .ui_format import is_ui_format, to_api_format
from .workflow import Workflow, is_link

MEDIA_TYPES = {"image": ".png", "video": ".mp4", "audio": ".wav"}  # type -> extension when none can be told
_SIGNATURES = [
    (b"\x89PNG", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"RIFF", None),  # WEBP or WAV: told by bytes 8-12
    (b"\x1aE\xdf\xa3", ".webm"),
    (b"fLaC", ".flac"),
    (b"OggS", ".ogg"),
    (b"ID3", ".mp3"),
]


class WorkflowLibraryError(Exception):
    """A shipped workflow or its parameter map is wrong; the message names the file."""


class ParamSpec(BaseModel):
    """One `[params.<name>]` table of a parameter map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: str | list[str]
    input: str
    type: Literal["string", "int", "float", "bool", "choice", "model", "image", "video", "audio"]
    description: str = ""
    default: Any = None
    required: bool = False
    min: int | float | None = None
    max: int | float | None = None
    choices: list[str | int | float] | None = None

    @property
    def nodes(self) -> list[str]:
        return [self.node] if isinstance(self.node, str) else list(self.node)


class ParamMap(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict)


class ParamFile(InputFile):
    """An input file given as a named workflow's parameter."""

    param: str

    def field(self, index: int) -> str:
        return f"input.params.{self.param}"


@dataclass(frozen=True)
class NamedWorkflow:
    name: str
    description: str
    format: Literal["api", "ui"]
    workflow: Workflow
    params: Mapping[str, ParamSpec]
    model: type[BaseModel]

    def apply(self, values: Mapping[str, Any]) -> tuple[Workflow, list[InputFile]]:
        """The graph with the parameters set, and the files they bring."""
        try:
            parsed = self.model.model_validate(values)
        except ValidationError as exc:
            allowed = ", ".join(self.params) or "none"
            problems = []
            for err in exc.errors():
                where = field_path(("params", *err["loc"]))
                if err["type"] == "extra_forbidden":
                    problems.append((where, f"is not a parameter of '{self.name}' (its parameters: {allowed})"))
                else:
                    problems.append((where, problem_text(err)))
            raise InvalidJobInput(problems) from None
        changes: dict[tuple[str, str], Any] = {}
        files: list[InputFile] = []
        for name, spec in self.params.items():
            value = getattr(parsed, name)
            if spec.type in MEDIA_TYPES:
                if value is None:
                    continue  # not given: the workflow's own file
                file_name = f"param-{name}{_extension(value, spec.type)}"
                files.append(ParamFile(name=file_name, image=value, param=name))
                value = file_name
            for node_id in spec.nodes:
                changes[(node_id, spec.input)] = value
        return self.workflow.with_inputs(changes), files

    def file_inputs(self) -> set[tuple[str, str]]:
        """(node id, input name) of every input that an image, video or audio parameter fills."""
        return {(node, spec.input) for spec in self.params.values() if spec.type in MEDIA_TYPES for node in spec.nodes}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "format": self.format,
            "parameters": self.model.model_json_schema(),
        }


class WorkflowLibrary:
    def __init__(self, workflows: Mapping[str, NamedWorkflow]):
        self.workflows = dict(workflows)

    @classmethod
    def load(cls, folder: Path, catalog: NodeCatalog) -> WorkflowLibrary:
        """Every `<name>.json` in the folder with its `<name>.toml`; a missing folder is an empty library."""
        workflows = {}
        errors = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                workflows[path.stem] = load_named_workflow(path, catalog)
            except WorkflowLibraryError as error:
                errors.append(str(error))
        orphans = [p.name for p in sorted(folder.glob("*.toml")) if not p.with_suffix(".json").exists()]
        errors += [f"{folder / name}: a parameter map without its workflow ({name[:-5]}.json)" for name in orphans]
        if errors:
            raise WorkflowLibraryError("\n".join(errors))
        return cls(workflows)

    def get(self, name: str) -> NamedWorkflow:
        if name not in self.workflows:
            there = ", ".join(sorted(self.workflows)) or "none (this image ships no named workflows)"
            raise InvalidJobInput(
                [("input.workflow_name", f"'{name}' is not a workflow of this worker; it has: {there}")]
            )
        return self.workflows[name]

    def describe(self) -> list[dict[str, Any]]:
        return [workflow.describe() for _, workflow in sorted(self.workflows.items())]


def load_named_workflow(path: Path, catalog: NodeCatalog) -> NamedWorkflow:
    name = path.stem
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WorkflowLibraryError(f"{path}: not readable as JSON ({exc})") from None
    if isinstance(raw, dict) and "workflow" in raw and "prompt" not in raw:
        raw = raw["workflow"]  # a job file's input, or a {"workflow": ...} wrapper
    fmt: Literal["api", "ui"] = "ui" if is_ui_format(raw) else "api"
    try:
        api = to_api_format(raw, catalog) if fmt == "ui" else raw
        workflow = Workflow.from_api(api)
    except InvalidJobInput as error:
        raise WorkflowLibraryError(f"{path}: {error.message.removeprefix('invalid job input: ')}") from None
    except ValueError as exc:
        raise WorkflowLibraryError(f"{path}: not an API-format or UI-format workflow ({exc})") from None
    unknown = [node_id for node_id in workflow if workflow.class_type(node_id) not in catalog]
    if unknown:
        names = ", ".join(f"node {node_id} ({workflow.class_type(node_id)})" for node_id in unknown)
        raise WorkflowLibraryError(f"{path}: node types this ComfyUI does not have: {names}")
    params = _read_param_map(path.with_suffix(".toml"))
    problems = [
        problem for param, spec in params.params.items() for problem in _target_problems(param, spec, workflow, catalog)
    ]
    if problems:
        raise WorkflowLibraryError(f"{path.with_suffix('.toml')}: " + "; ".join(problems))
    fields = {param: _field(spec, workflow, catalog) for param, spec in params.params.items()}
    model = create_model(f"{name}_params", __config__=ConfigDict(extra="forbid", title=f"{name} parameters"), **fields)  # type: ignore[call-overload]
    return NamedWorkflow(name, params.description, fmt, workflow, params.params, model)


def _read_param_map(path: Path) -> ParamMap:
    if not path.exists():
        return ParamMap()
    try:
        return ParamMap.model_validate(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WorkflowLibraryError(f"{path}: not readable as TOML ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {problem_text(e)}" for e in exc.errors())
        raise WorkflowLibraryError(f"{path}: {problems}") from None


def _target_problems(param: str, spec: ParamSpec, workflow: Workflow, catalog: NodeCatalog) -> list[str]:
    problems = []
    for node_id in spec.nodes:
        class_type = workflow.class_type(node_id)
        if class_type is None:
            problems.append(f"params.{param}: node '{node_id}' is not in the workflow")
            continue
        value = workflow.input_value(node_id, spec.input)
        if is_link(value):
            problems.append(f"params.{param}: input '{spec.input}' of node {node_id} is wired to another node")
        elif value is None and spec.input not in catalog.inputs(class_type):
            problems.append(f"params.{param}: node {node_id} ({class_type}) has no input '{spec.input}'")
    if spec.type == "model" and _combo_options(spec, workflow, catalog) is None:
        problems.append(f"params.{param}: a model parameter needs an input that lists model files")
    if spec.type == "choice" and not spec.choices and not _combo_options(spec, workflow, catalog):
        problems.append(f"params.{param}: a choice needs `choices`, or an input that ComfyUI offers choices for")
    return problems


def _combo_options(spec: ParamSpec, workflow: Workflow, catalog: NodeCatalog) -> list[Any] | None:
    """The values ComfyUI offers for the parameter's (first) input; None if it is not a list input."""
    return catalog.choices(workflow.class_type(spec.nodes[0]) or "", spec.input)


def _field(spec: ParamSpec, workflow: Workflow, catalog: NodeCatalog) -> tuple[Any, Any]:
    """(annotation, pydantic Field) for one parameter."""
    current = workflow.input_value(spec.nodes[0], spec.input)
    extra: JsonDict = {"x-comfy-inputs": [f"{node}.{spec.input}" for node in spec.nodes]}
    if spec.type in MEDIA_TYPES:
        media = Annotated[
            FileSource | None,
            PlainValidator(file_source),
            WithJsonSchema(
                {
                    "type": "string",
                    "contentMediaType": f"{spec.type}/*",
                    "description": "base64, a data URI, an http(s) URL or an s3://bucket/key reference",
                }
            ),
        ]
        if spec.required:
            return media, Field(description=spec.description, json_schema_extra=extra)
        return media, Field(default=None, description=spec.description, json_schema_extra=extra)
    annotation: Any = {"string": StrictStr, "int": StrictInt, "float": float, "bool": StrictBool}.get(spec.type)
    if spec.type == "choice":
        choices = spec.choices or _combo_options(spec, workflow, catalog) or []
        annotation = Literal[tuple(choices)]
        extra["enum"] = list[JsonValue](choices)  # pydantic writes a lone choice as "const"; forms want "enum"
    if spec.type == "model":
        # An installed file (possibly none yet), or a model fetched on demand (remote_models.py).
        installed = [choice for choice in _combo_options(spec, workflow, catalog) or [] if isinstance(choice, str)]
        annotation = Annotated[StrictStr, AfterValidator(functools.partial(_installed_or_remote, installed))]
        extra["x-installed"] = list[JsonValue](installed)
    default = spec.default if "default" in spec.model_fields_set else current
    numeric = spec.type in ("int", "float")
    field = Field(
        default=... if spec.required or default is None else default,
        description=spec.description,
        json_schema_extra=extra,
        ge=spec.min if numeric else None,
        le=spec.max if numeric else None,
    )
    return annotation, field


def _installed_or_remote(installed: list[str], value: str) -> str:
    if value in installed or is_reference(value):
        return value
    shown = ", ".join(installed[:20]) + (", ..." if len(installed) > 20 else "") if installed else "none"
    raise ValueError(f"must be an installed file (installed: {shown}), or an https://, hf:// or s3:// reference")


def _extension(value: FileSource, media_type: str) -> str:
    """The file's extension, from a URL's path or the data's first bytes; loaders (video
    ones especially) pick their decoder by it."""
    if not isinstance(value, Inline):
        suffix = PurePosixPath(value.path).suffix.lower()
        return suffix if 1 < len(suffix) <= 6 else MEDIA_TYPES[media_type]
    data = value.data
    for signature, extension in _SIGNATURES:
        if data.startswith(signature):
            if extension is None:
                return {b"WEBP": ".webp", b"WAVE": ".wav"}.get(data[8:12], MEDIA_TYPES[media_type])
            return extension
    if data[4:8] == b"ftyp":
        return ".mp4"
    return MEDIA_TYPES[media_type]
