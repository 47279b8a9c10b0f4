"""GENERATED from comfy_worker/core/contract.py by `python -m comfy_worker.core.contract write`: do not edit.

The job's contract, as the endpoint client reads it: its states, its output lists, RunPod's limits."""

from enum import StrEnum


class JobState(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


FINAL_STATES = frozenset(["CANCELLED", "COMPLETED", "FAILED", "TIMED_OUT"])
RETRYABLE_STATES = frozenset(["FAILED", "TIMED_OUT"])
OUTPUT_LISTS = {"image": "images", "video": "videos", "audio": "audio", "file": "files"}
RUNPOD_REQUEST_LIMITS = {"/run": 10000000, "/runsync": 20000000}
RUNPOD_RESULT_LIMIT_BYTES = 10000000
