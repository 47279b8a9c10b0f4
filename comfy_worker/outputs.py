"""Find a finished prompt's outputs in its ComfyUI history entry.

Contract: `files_in_history` lists every file ComfyUI reports for the prompt, from
every output key of every node (`images` for still and animated images and core
video nodes, `gifs` from VideoHelperSuite-style nodes, `audio`, ...), registering
output and temp files with the job's `JobFiles` for removal. `texts_in_history`
lists text outputs (`text` lists of strings, e.g. PreviewAny). What becomes of the
files (format, base64 or bucket) is `delivery`'s business.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .job_files import JobFiles
from .settings import Settings

mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("video/webm", ".webm")
mimetypes.add_type("audio/flac", ".flac")


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
    def media(self) -> str:
        """image, video, audio or file: which list of the result it goes in."""
        kind = self.mime_type.split("/")[0]
        return kind if kind in ("image", "video", "audio") else "file"


def files_in_history(history: dict[str, Any], settings: Settings, job_files: JobFiles) -> list[OutputFile]:
    roots = {"output": settings.output_dir, "temp": settings.temp_dir, "input": settings.input_dir}
    files = []
    for node_id, node_output in (history.get("outputs") or {}).items():
        animated = any(node_output.get("animated") or [])
        for items in node_output.values():
            if not isinstance(items, list):
                continue
            for item in items:
                if not (isinstance(item, dict) and "filename" in item and item.get("type") in roots):
                    continue
                path = job_files.resolve(roots[item["type"]], item.get("subfolder", ""), item["filename"])
                if item["type"] != "input":  # inputs belong to the job's uploads, or to the image
                    job_files.add(path)
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
    for node_id, node_output in (history.get("outputs") or {}).items():
        for text in node_output.get("text") or []:
            if isinstance(text, str):
                texts.append({"node_id": node_id, "text": text})
    return texts


def mime_type_of(item: dict[str, Any]) -> str:
    # VideoHelperSuite reports e.g. "format": "video/h264-mp4"; keep the top type, name the subtype by the file.
    guessed = mimetypes.guess_type(item["filename"])[0]
    declared = item.get("format")
    if (
        isinstance(declared, str)
        and "/" in declared
        and not (guessed and guessed.split("/")[0] == declared.split("/")[0])
    ):
        return declared
    return guessed or "application/octet-stream"
