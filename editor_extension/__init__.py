"""Run on RunPod: run the workflow open in the ComfyUI editor on your RunPod endpoint.

A ComfyUI extension (install this folder into ComfyUI's custom_nodes/; docs/editor.md):
`bridge.py` is the server part (ComfyUI's own PromptServer routes under /runpod/, `routes.py`,
which hold the API key and call the endpoint through the endpoint client), `web/runpod_run.js`
the editor part (settings, the "Run on RunPod" button and command, progress, outputs); `QueueHistory` here puts the
runs that end into ComfyUI's queue history, for the editor's Queue panel. It adds no nodes.
"""

import logging
from pathlib import Path

from .bridge import Bridge
from .endpoint_client import client
from .routes import own_host_names, routes

try:
    import folder_paths
    from comfy.cli_args import args
    from server import PromptServer
except ImportError:  # imported outside ComfyUI (its tests, the type checker): nothing to register
    PromptServer = None

WEB_DIRECTORY = "./web"
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}


class QueueHistory:
    """ComfyUI's own queue history (PromptServer's prompt_queue), where the editor's Queue
    panel finds runs: a run on RunPod is added as a prompt ComfyUI ran would be."""

    def next_number(self) -> int:
        server = PromptServer.instance
        number = server.number  # as POST /prompt numbers a prompt, on this same event loop
        server.number += 1
        return int(number)

    def add(self, entry_id: str, entry: dict) -> None:
        queue = PromptServer.instance.prompt_queue
        with queue.mutex:
            queue.history[entry_id] = entry
        PromptServer.instance.queue_updated()  # the "status" event: the panel reloads


def upload_bucket() -> client.UploadBucket | None:
    """The bucket BUCKET_* in ComfyUI's environment names, for inputs over RunPod's limit; None if none."""
    try:
        return client.UploadBucket.from_env()
    except ValueError as wrong:  # a half-set bucket: said once, and large inputs are refused
        logging.getLogger("runpod_run").warning("Run on RunPod uses no bucket: %s", wrong)
        return None


def register() -> None:
    """The /runpod/ routes on ComfyUI's own server."""
    bridge = Bridge(
        Path(folder_paths.get_user_directory()) / "runpod_run.json",
        Path(folder_paths.get_input_directory()),
        Path(folder_paths.get_output_directory()),
        upload_bucket(),
        QueueHistory(),
    )
    for route in routes(bridge, own_host_names(args.listen)):
        PromptServer.instance.routes.route(route.method, route.path)(route.handler)


if PromptServer is not None:
    register()
