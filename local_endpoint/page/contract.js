// GENERATED from comfy_worker/core/contract.py by `python -m comfy_worker.core.contract write`: do not edit.
// The job's contract: its states, its output lists, RunPod's limits.
export const JobState = Object.freeze({"IN_QUEUE": "IN_QUEUE", "IN_PROGRESS": "IN_PROGRESS", "COMPLETED": "COMPLETED", "FAILED": "FAILED", "CANCELLED": "CANCELLED", "TIMED_OUT": "TIMED_OUT"});
export const FINAL_STATES = Object.freeze(["CANCELLED", "COMPLETED", "FAILED", "TIMED_OUT"]);
export const RETRYABLE_STATES = Object.freeze(["FAILED", "TIMED_OUT"]);
export const OUTPUT_LISTS = Object.freeze({"image": "images", "video": "videos", "audio": "audio", "file": "files"});
export const RUNPOD_REQUEST_LIMITS = Object.freeze({"/run": 10000000, "/runsync": 20000000});
export const RUNPOD_RESULT_LIMIT_BYTES = 10000000;
