"""The parts of the RunPod ComfyUI worker, one module per stage of a job.

    job_input      parse and validate the job's input (pure)
    comfy_process  wait for ComfyUI while its process lives
    inputs         upload input files to ComfyUI
    execution      submit the prompt and follow it to the end
    outputs        collect and encode the output files
    job_files      remove every file the job created
    comfy_client   HTTP + websocket transport to ComfyUI
    errors         error hierarchy and the job's error result
    settings       environment settings, read once

rp_handler.py at the repository root strings them together.
"""
