"""The parts of the RunPod ComfyUI worker, one module per stage of a job.

    job_input      parse and validate the job's input (pure)
    comfy_process  wait for ComfyUI while its process lives; the shared connection
    inputs         fetch URL inputs (SSRF-safe) and upload input files to ComfyUI
    execution      submit the prompt, follow it to the end, stop it
    progress       fold events into the progress payload; throttle the relay
    outputs        find the prompt's output files and texts in its history
    delivery       still-image format, base64 or bucket URLs, the size guard
    storage        S3-compatible uploads and presigned URLs
    job_files      remove every file the job created
    timings        per-stage wall times for the result
    comfy_client   HTTP + websocket transport to ComfyUI
    errors         error hierarchy and the job's error result
    settings       environment settings, read once

rp_handler.py at the repository root strings them together.
"""
