"""The ComfyUI edge: its API, its process, its event stream, what it offers, one prompt's events, its files.

The package's map (comfy_worker/__init__.py) lists its modules; it imports only the rooms below it."""
