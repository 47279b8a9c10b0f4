"""Client for a ComfyUI worker endpoint, on RunPod or on localhost (local_endpoint).

    from comfy_worker_client import EndpointClient, job_input_from_files   # scripts, blocking
    from comfy_worker_client import AsyncEndpoint                          # inside an event loop
    from comfy_worker_client import verify_webhook   # in the app that receives a job's progress_webhook

The job's states, output lists and RunPod's limits come from `comfy_worker_client.contract`
(generated from the worker's own contract).
"""

from . import contract
from .blocking import EndpointClient
from .endpoint import RUNPOD_API, AsyncEndpoint, EndpointAnswered, EndpointError, EndpointUnreachable, JobFailed
from .files import job_input_from_files, output_file_name, save_outputs
from .uploads import Moved, RequestTooLarge, UploadBucket
from .webhooks import WebhookRejected, verify_webhook

__all__ = [
    "RUNPOD_API",
    "AsyncEndpoint",
    "EndpointAnswered",
    "EndpointClient",
    "EndpointError",
    "EndpointUnreachable",
    "JobFailed",
    "Moved",
    "RequestTooLarge",
    "UploadBucket",
    "WebhookRejected",
    "contract",
    "job_input_from_files",
    "output_file_name",
    "save_outputs",
    "verify_webhook",
]
