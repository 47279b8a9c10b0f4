"""WorkerSaveImage: ComfyUI's SaveImage, with the PNG encoding moved off ComfyUI's prompt thread.

The worker runs jobs with this node in place of SaveImage (comfy_worker/request/workflow.py,
`BACKGROUND_SAVERS`) when ComfyUI has it. The files are the same as SaveImage's: the
same names and counter, the same pixels, the same compression and metadata. What
differs is when: the node copies the pixels, reserves each file name, and returns at
once, so ComfyUI starts the next prompt while a thread compresses the PNGs (zlib
releases the GIL, so the encoding runs beside the next prompt's work).

The contract with the worker: before the node returns, `<name>` exists, empty (created
exclusively, so no other prompt can take the name), and so does `<name>.writing`; the
thread writes the PNG into `<name>.writing` and renames it over `<name>` when complete.
A failed write removes `<name>` and leaves its cause in `<name>.failed` (the marker, emptied
and renamed, so it takes no room on a full disk), which the worker reports. The worker
waits for `<name>.writing` to go before it reads or removes `<name>`.
At most MAX_PENDING images wait for the thread; past that the node encodes in place, as it
does for a name too long for its marker beside it (SaveImage's rule is the only limit).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import folder_paths
import nodes
import numpy as np
from comfy.cli_args import args
from PIL import Image
from PIL.PngImagePlugin import PngInfo

log = logging.getLogger(__name__)

WRITING_SUFFIX = ".writing"
FAILED_SUFFIX = ".failed"  # no longer than WRITING_SUFFIX: where one fits, so does the other
NAME_MAX_BYTES = 255  # a file name's limit on Linux file systems
MAX_PENDING = 16
ENCODER_THREADS = 2

_encoder = ThreadPoolExecutor(max_workers=ENCODER_THREADS, thread_name_prefix="worker-save-image")
_pending = threading.BoundedSemaphore(MAX_PENDING)


def _as_submitted(prompt: dict) -> dict:
    """The prompt as the job wrote it: SaveImage where the worker ran this node, so the graph
    in the PNG loads in any ComfyUI."""
    return {
        node_id: {**node, "class_type": "SaveImage"} if node.get("class_type") == "WorkerSaveImage" else node
        for node_id, node in prompt.items()
    }


def _metadata(prompt, extra_pnginfo) -> PngInfo | None:
    if args.disable_metadata:
        return None
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(_as_submitted(prompt)))
    for key, value in (extra_pnginfo or {}).items():
        metadata.add_text(key, json.dumps(value))
    return metadata


def _write(pixels: np.ndarray, metadata: PngInfo | None, path: str, compress_level: int) -> None:
    writing = path + WRITING_SUFFIX
    try:
        Image.fromarray(pixels).save(writing, format="PNG", pnginfo=metadata, compress_level=compress_level)
        os.replace(writing, path)
    except Exception as exc:
        log.exception("WorkerSaveImage could not write %s", path)
        _leave_cause(path, writing, exc)


def _leave_cause(path: str, writing: str, exc: Exception) -> None:
    """No empty image is ever delivered: `<name>` goes, and the marker becomes `<name>.failed`
    holding the cause (emptied first: on a full disk that frees the room its few bytes need)."""
    failed = path + FAILED_SUFFIX
    cause = f"{errno.errorcode.get(exc.errno, 'error')}: {exc.strerror}" if isinstance(exc, OSError) else repr(exc)
    try:
        os.truncate(writing, 0)
        os.replace(writing, failed)
        with open(failed, "w") as note:
            note.write(cause)
    except OSError:
        pass
    for unfinished in (path, writing):
        try:
            os.unlink(unfinished)
        except OSError:
            pass


def _marker_fits(path: str) -> bool:
    return len(os.fsencode(os.path.basename(path) + WRITING_SUFFIX)) <= NAME_MAX_BYTES


def _claim(folder: str, stem: str, counter: int) -> tuple[str, str, int]:
    """The first free `<stem>_<counter>_.png` from `counter` on, created empty (so it is ours,
    and the next prompt's counter counts it) with its `.writing` marker beside it. ComfyUI's
    counter comes from listing the folder, which may miss a file being renamed at that moment
    (or, with %batch_num%, never match): creating the name exclusively is what makes it unique."""
    while True:
        file = f"{stem}_{counter:05}_.png"
        path = os.path.join(folder, file)
        try:
            with open(path, "xb"):
                pass
        except FileExistsError:
            counter += 1
            continue
        if _marker_fits(path):
            with open(path + WRITING_SUFFIX, "wb"):
                pass
        return file, path, counter


class WorkerSaveImage(nodes.SaveImage):
    DESCRIPTION = "Saves images as SaveImage does, encoding the PNGs while the next prompt runs."

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        filename_prefix += self.prefix_append
        folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path(
            filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0]
        )
        metadata = _metadata(prompt, extra_pnginfo)
        results = []
        for batch_number, image in enumerate(images):
            # Copied now: the tensor belongs to ComfyUI's cache once the node returns.
            pixels = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
            file, path, counter = _claim(folder, filename.replace("%batch_num%", str(batch_number)), counter)
            if not _marker_fits(path):  # as SaveImage writes it, in place: the node fails if it does
                Image.fromarray(pixels).save(path, format="PNG", pnginfo=metadata, compress_level=self.compress_level)
            elif _pending.acquire(blocking=False):
                future = _encoder.submit(_write, pixels, metadata, path, self.compress_level)
                future.add_done_callback(lambda _: _pending.release())
            else:
                _write(pixels, metadata, path, self.compress_level)
            results.append({"filename": file, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results}}


NODE_CLASS_MAPPINGS = {"WorkerSaveImage": WorkerSaveImage}
NODE_DISPLAY_NAME_MAPPINGS = {"WorkerSaveImage": "Save Image (worker)"}
