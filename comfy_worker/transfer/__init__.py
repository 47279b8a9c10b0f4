"""Bytes in and out: safe downloads, the output store, a job's input files, the delivery of its outputs.

The package's map (comfy_worker/__init__.py) lists its modules; it imports only the rooms below it."""
