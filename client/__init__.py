"""Client for a ComfyUI worker endpoint, on RunPod or on localhost (local_endpoint).

from client import EndpointClient, job_input_from_files, save_outputs
from client import verify_webhook   # in the app that receives a job's progress_webhook
"""

from .api import EndpointClient, JobFailed, job_input_from_files, save_outputs
from .uploads import RequestTooLarge, UploadBucket
from .webhooks import WebhookRejected, verify_webhook

__all__ = [
    "EndpointClient",
    "JobFailed",
    "RequestTooLarge",
    "UploadBucket",
    "WebhookRejected",
    "job_input_from_files",
    "save_outputs",
    "verify_webhook",
]
