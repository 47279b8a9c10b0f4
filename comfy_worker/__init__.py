"""The parts of the RunPod ComfyUI worker, one module per stage of a job's data flow.

    worker         the Worker: lifecycle, the job's story, the error boundary, clean-up
    job_input      parse and validate the job's input (pure)
    workflow       the workflow as a value: nodes, titles, output nodes, cache tag, prompt
    comfy_api      the interface to ComfyUI (a Protocol) and its event type
    comfy_client   that interface over HTTP + websocket (aiohttp)
    comfy_process  ComfyUI's process: alive or dead; wait while it starts
    input_files    fetch URL inputs (SSRF-safe), write input files into ComfyUI's input folder
    prompt         submit the prompt, follow it to the end, stop it
    progress       fold events into the progress payload; throttle the relay
    runpod_progress  send progress to RunPod in order (one sender, newest wins)
    history        find the prompt's output files and texts in its history (pure)
    delivery       still-image format, base64 or store URLs, the size guard
    storage        the OutputStore interface, and S3-compatible buckets
    job_files      ComfyUI's job folders; remove every file the job created
    timings        per-stage wall times for the result
    errors         error hierarchy and the job's error result
    settings       environment settings, read once
    warmup         run one job before taking jobs (python -m comfy_worker.warmup)

rp_handler.py at the repository root does the process's lifecycle around a Worker.
"""
