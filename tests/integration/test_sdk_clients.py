"""RunPod's own client SDKs against the local endpoint, with a real worker and ComfyUI:
the Python SDK's `runpod.Endpoint` and the npm `runpod-sdk` driven by node."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import runpod

from tests.support.local_endpoint import API_KEY
from tests.support.tools import missing
from tests.support.workflows import REPO_ROOT, empty_image, txt2img

JS_DIR = REPO_ROOT / ".local" / "js"  # scripts/dev/setup_test_tools.sh installs the npm SDK here


@pytest.fixture
def endpoint_sdk(endpoint, monkeypatch) -> runpod.Endpoint:
    base_url, _ = endpoint
    monkeypatch.setattr(runpod, "endpoint_url_base", base_url.rsplit("/", 1)[0])  # .../v2
    return runpod.Endpoint("local", api_key=API_KEY)


def wait_for_step(job: runpod.endpoint.runner.Job, endpoint_sdk: runpod.Endpoint) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = endpoint_sdk.rp_client.get(f"local/status/{job.job_id}")
        if status["status"] == "IN_PROGRESS" and (status.get("output") or {}).get("step"):
            return
        time.sleep(0.1)
    raise AssertionError("the job did not start sampling")


def test_the_python_sdk_runs_streams_cancels_and_reads_health(endpoint_sdk):
    output = endpoint_sdk.run_sync({"workflow": empty_image()}, timeout=60)
    assert output["images"][0]["type"] == "base64"

    job = endpoint_sdk.run({"input": {"workflow": txt2img(steps=20, seed=31)}})
    assert job.status() in {"IN_QUEUE", "IN_PROGRESS"}
    assert list(job.stream()) == []  # the handler does not yield: nothing streams, as on RunPod
    assert job.status() == "COMPLETED"
    assert job.output()["images"]

    long_job = endpoint_sdk.run({"workflow": txt2img(steps=400, seed=32)})
    wait_for_step(long_job, endpoint_sdk)
    assert long_job.cancel()["status"] == "CANCELLED"
    assert long_job.status() == "CANCELLED"

    health = endpoint_sdk.health()
    assert health["jobs"]["completed"] >= 2
    assert health["workers"]["ready"] == 1
    assert endpoint_sdk.purge_queue() == {"removed": 0, "status": "completed"}


def test_the_npm_sdk_runs_polls_status_sync_streams_and_cancels(endpoint, tmp_path):
    node = shutil.which("node")
    if node is None:
        missing("node")
    if not (JS_DIR / "node_modules" / "runpod-sdk").is_dir():
        missing("the npm runpod-sdk")
    script = JS_DIR / "sdk_client.mjs"  # beside its node_modules, where node resolves the import
    shutil.copy(REPO_ROOT / "tests" / "js" / "sdk_client.mjs", script)
    jobs = tmp_path / "jobs.json"
    jobs.write_text(
        json.dumps(
            {
                "quick": {"workflow": empty_image(color=0x102030)},
                "long": {"workflow": txt2img(steps=400, seed=34)},
            }
        )
    )
    base_url = endpoint[0].rsplit("/", 1)[0]
    result = subprocess.run(
        [node, str(script), base_url, API_KEY, "local", str(jobs)], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.strip().splitlines()[-1])

    quick = results["runSyncQuick"]
    assert quick["status"] == "COMPLETED"
    assert quick["succeeded"]
    assert quick["output"]["images"]
    queued = results["runSyncQueued"]
    assert queued["status"] == "COMPLETED"
    assert queued["completed"]
    assert queued["output"]["images"]
    waited = queued["delayTime"] + queued["executionTime"]  # in RunPod's queue, or taken and in ComfyUI's
    assert waited > 5000, "it outlived /runsync's wait: runSync got it from /status-sync"
    assert results["streamChunks"] == []
    assert results["statusAfterStream"]["status"] == "COMPLETED"
    assert results["cancel"]["status"] == "CANCELLED"
    health = results["health"]
    assert {"inQueue", "inProgress", "completed", "failed", "retried"} <= health["jobs"].keys()
    assert {"idle", "initializing", "ready", "running", "throttled"} <= health["workers"].keys()
    assert results["purgeQueue"] == {"removed": 0, "status": "completed"}
