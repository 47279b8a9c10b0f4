"""Put the job's input files into ComfyUI's input folder before the prompt runs.

Contract: `upload_inputs` uploads each file through ComfyUI's /upload/image
(overwrite on, so a name always means this job's bytes) and registers the stored
path with the job's `JobFiles`, as it goes, so a failure half-way still leaves
nothing behind.
"""

from __future__ import annotations

from .comfy_client import ComfyClient
from .job_files import JobFiles
from .job_input import InputImage
from .settings import Settings


async def upload_inputs(client: ComfyClient, images: list[InputImage], settings: Settings, job_files: JobFiles) -> None:
    for image in images:
        stored = await client.upload_image(image.name, image.image)
        job_files.add(job_files.resolve(settings.input_dir, stored.get("subfolder", ""), stored["name"]))
