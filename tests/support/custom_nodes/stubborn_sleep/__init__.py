"""A custom node for the tests: sleeps without ever checking for interrupts, as a long
native call (a big decode, a stuck CUDA kernel) does. ComfyUI's interrupt cannot stop it."""

import time


class StubbornSleep:
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "sleep"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"seconds": ("FLOAT", {"default": 60.0, "min": 0.0, "max": 3600.0})}}

    def sleep(self, seconds: float) -> dict:
        time.sleep(seconds)
        return {}


NODE_CLASS_MAPPINGS = {"StubbornSleep": StubbornSleep}
