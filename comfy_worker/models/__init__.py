"""Models a job names by URL or hf://: fetched into a shared cache; the first job's read ahead at boot.

The package's map (comfy_worker/__init__.py) lists its modules; it imports only the rooms below it."""
