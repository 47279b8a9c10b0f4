"""Read a prompt's outputs from its ComfyUI history entry. Pure: no I/O, no side effects.

Contract: `files_in_history` lists every file ComfyUI reports for the prompt, from
every output key of every node (`images` for still and animated images and core
video nodes, `gifs` from VideoHelperSuite-style nodes, `audio`, ...), with its path
resolved inside the job folders (`UnsafePath` otherwise). `texts_in_history` lists
text outputs (`text` lists of strings, e.g. PreviewAny). Removing the files is the
worker's call (`JobFiles`); what becomes of them (format, base64 or bucket) is
`delivery`'s.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.contract import Media
from ..core.job_files import JobFolders

# Types that some systems' mime.types lack; looked up here before `mimetypes`.
EXTRA_MIME_TYPES = {".webp": "image/webp", ".webm": "video/webm", ".flac": "audio/flac"}


@dataclass(frozen=True)
class OutputFile:
    node_id: str
    filename: str
    subfolder: str
    folder_type: str  # "output", "temp" (previews) or "input" (a node echoing an input file)
    path: Path
    mime_type: str
    animated: bool = False

    @property
    def created_by_job(self) -> bool:
        """Output and temp files are the prompt's own; an input file belongs to the job's inputs or the image."""
        return self.folder_type != "input"

    @property
    def media(self) -> Media:
        """image, video, audio or file: which list of the result it goes in."""
        kind = self.mime_type.split("/")[0]
        return Media(kind) if kind in (Media.IMAGE, Media.VIDEO, Media.AUDIO) else Media.FILE


def files_in_history(history: dict[str, Any], folders: JobFolders) -> list[OutputFile]:
    files = []
    for node_id, node_output in _node_outputs(history):
        animated = any(node_output.get("animated") or [])
        for items in node_output.values():
            if not isinstance(items, list):
                continue
            for item in items:
                root = folders.folder(str(item.get("type"))) if isinstance(item, dict) else None
                if root is None or "filename" not in item:
                    continue
                path = folders.resolve(root, item.get("subfolder", ""), item["filename"])
                files.append(
                    OutputFile(
                        node_id=node_id,
                        filename=item["filename"],
                        subfolder=item.get("subfolder", ""),
                        folder_type=item["type"],
                        path=path,
                        mime_type=mime_type_of(item),
                        animated=animated,
                    )
                )
    return files


def texts_in_history(history: dict[str, Any]) -> list[dict[str, str]]:
    texts = []
    for node_id, node_output in _node_outputs(history):
        for text in node_output.get("text") or []:
            if isinstance(text, str):
                texts.append({"node_id": node_id, "text": text})
    return texts


def _node_outputs(history: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(node id, its output) pairs, leaving out whatever is not shaped like one."""
    outputs = history.get("outputs")
    if not isinstance(outputs, dict):
        return []
    return [(str(node_id), output) for node_id, output in outputs.items() if isinstance(output, dict)]


def mime_type_of(item: dict[str, Any]) -> str:
    # VideoHelperSuite reports e.g. "format": "video/h264-mp4"; keep the top type, name the subtype by the file.
    suffix = Path(item["filename"]).suffix.lower()
    guessed = EXTRA_MIME_TYPES.get(suffix) or mimetypes.guess_type(item["filename"])[0]
    declared = item.get("format")
    if (
        isinstance(declared, str)
        and "/" in declared
        and not (guessed and guessed.split("/")[0] == declared.split("/")[0])
    ):
        return declared
    return guessed or "application/octet-stream"
