"""What every room stands on: the job's contract, the error hierarchy, the settings, the RunPod SDK's names.

The package's map (comfy_worker/__init__.py) lists its modules; it imports only the rooms below it."""
