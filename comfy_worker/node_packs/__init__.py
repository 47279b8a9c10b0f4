"""Custom node packs from the network volume: their pins, their requirements layer, what became of them.

The package's map (comfy_worker/__init__.py) lists its modules; it imports only the rooms below it."""
