"""What the job asks for: its input, parsed and validated, and the workflow it names, as a value.

The package's map (comfy_worker/__init__.py) lists its modules; it imports only the rooms below it."""
