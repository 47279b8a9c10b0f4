"""Client for a ComfyUI worker endpoint, on RunPod or on localhost (local_endpoint).

from client import EndpointClient, job_input_from_files, save_outputs
"""

from .api import EndpointClient, JobFailed, job_input_from_files, save_outputs

__all__ = ["EndpointClient", "JobFailed", "job_input_from_files", "save_outputs"]
