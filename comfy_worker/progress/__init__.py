"""What the job's caller sees while it runs: the progress payload, its relay to RunPod, the job's webhook.

The package's map (comfy_worker/__init__.py) lists its modules; it imports only the rooms below it."""
