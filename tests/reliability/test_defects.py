"""The defects the adversarial reviews found, each against a real ComfyUI. The test
names carry the defect's number (issue 11's plain, issue 20's as `issue20_N`); the
unit tests cover the rest (see the reliability table in docs)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import pytest
from PIL import Image

from comfy_worker.core.settings import Settings
from comfy_worker.progress import webhooks
from comfy_worker.worker import Worker
from comfy_worker_client import EndpointClient
from tests.support.comfyui_server import PINNED_COMFYUI_DIR, PYTHON, free_port, link_custom_nodes, start_comfyui
from tests.support.local_endpoint import API_KEY, running_endpoint
from tests.support.servers import misbehaving_http_server, stalled_server
from tests.support.workflows import add_lora, decode_image, empty_image, load_image, png_base64, txt2img


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.case_class("file names and files")
async def test_1_the_same_job_id_twice_returns_its_outputs_both_times(run_job, then_healthy):
    job = {"workflow": empty_image(color=0x515151, prefix="same-id")}
    first = await run_job(job, job_id="local_test")
    second = await run_job(job, job_id="local_test")
    for result in (first, second):
        assert "error" not in result, result
        assert decode_image(result["images"][0]).getpixel((0, 0)) == (0x51, 0x51, 0x51)


@pytest.mark.case_class("file names and files")
@pytest.mark.parametrize("name", ["my photo.png", 'été (1);"x".png', "日本語 ✓.png", ".hidden.png"])
async def test_2_input_names_are_kept_verbatim(run_job, then_healthy, name):
    result = await run_job({"workflow": load_image(name), "images": [{"name": name, "image": png_base64((9, 8, 7))}]})
    assert "error" not in result, result
    assert decode_image(result["images"][0]).getpixel((0, 0)) == (9, 8, 7)


@pytest.mark.case_class("file names and files")
async def test_3_a_name_too_long_is_an_input_error_not_a_dead_comfyui(run_job, then_healthy):
    name = "é" * 130 + ".png"
    result = await run_job({"workflow": load_image(name), "images": [{"name": name, "image": png_base64((1, 1, 1))}]})
    assert result["error_type"] == "invalid_input"
    assert "refresh_worker" not in result
    assert "at most 255 bytes" in result["error"]


@pytest.mark.case_class("file names and files")
async def test_4_a_job_never_replaces_or_removes_what_it_did_not_create(run_job, comfyui, then_healthy):
    baked = comfyui.base_dir / "input" / "baked.png"
    baked.write_bytes(png((200, 0, 0)))
    empty_folder = comfyui.base_dir / "input" / "volume-folder"
    empty_folder.mkdir()
    try:
        result = await run_job(
            {"workflow": load_image("baked.png"), "images": [{"name": "baked.png", "image": png_base64((0, 0, 200))}]}
        )
        assert "error" not in result, result
        assert decode_image(result["images"][0]).getpixel((0, 0)) == (0, 0, 200), "the job saw its own file"
        assert baked.read_bytes() == png((200, 0, 0)), "the baked file is untouched"
        assert empty_folder.is_dir()
    finally:
        baked.unlink()
        empty_folder.rmdir()


@pytest.mark.case_class("URLs")
@pytest.mark.parametrize(
    "path, expected",
    [
        ("/redirect-bad-port?sig=SECRET-SIG", "invalid URL"),
        ("/redirect-loop?sig=SECRET-SIG", "maximum redirects"),
        ("/redirect-ftp?sig=SECRET-SIG", "refused"),
        ("/redirect-no-location?sig=SECRET-SIG", "refused"),
        ("/missing?sig=SECRET-SIG", "HTTP 404"),
    ],
)
async def test_5_and_9_broken_urls_are_input_errors_that_show_no_signature(
    run_job, then_healthy, monkeypatch, caplog, path, expected
):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    with misbehaving_http_server(png((1, 2, 3))) as base:
        result = await run_job({"workflow": load_image("u.png"), "images": [{"name": "u.png", "image": base + path}]})
    assert result["error_type"] == "invalid_input", result
    assert result["details"]["problems"][0]["field"] == "input.images[0].image"
    assert expected in result["error"]
    assert "SECRET-SIG" not in str(result)
    assert "SECRET-SIG" not in caplog.text


@pytest.mark.case_class("URLs")
async def test_10_a_slow_drip_download_is_cut_at_its_deadline(run_job, use_settings, monkeypatch):
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    use_settings(INPUT_URL_TIMEOUT_S="1")
    with misbehaving_http_server(png((1, 2, 3))) as base:
        # The drip takes 200 s: only the 1 s deadline can end the job with this error.
        result = await run_job(
            {"workflow": load_image("d.png"), "images": [{"name": "d.png", "image": f"{base}/drip"}]}
        )
    assert result["error_type"] == "invalid_input"
    assert "INPUT_URL_TIMEOUT_S" in result["error"]
    assert "took longer than 1 s" in result["error"]


@pytest.mark.case_class("file names and files")
@pytest.mark.parametrize("path", ["/etc/hostname", "../../../../etc/hostname", "a/../../../x.png [input]"])
async def test_16_a_loader_may_not_read_outside_comfyuis_folders(run_job, then_healthy, path):
    result = await run_job({"workflow": load_image(path)})
    assert result["error_type"] == "invalid_input"
    assert result["details"]["problems"][0]["field"] == "input.workflow.1.inputs.image"


@pytest.mark.case_class("faults between worker and ComfyUI")
async def test_7_a_node_that_ignores_the_interrupt_gets_comfyui_restarted(tmp_path, captured_progress, progress):
    stubborn = start_comfyui(tmp_path / "stubborn")
    port = int(stubborn.host.rpartition(":")[2])
    settings = Settings.from_env({**stubborn.env(), "STOP_GRACE_S": "1", "EVENT_SILENCE_CHECK_S": "1"})
    worker = Worker(settings, captured_progress)
    replacement = None
    try:
        await worker.start()
        workflow = {"1": {"class_type": "StubbornSleep", "inputs": {"seconds": 120.0}}}
        # The node sleeps 120 s: the job ends only through the timeout, the grace and the kill.
        result = await worker.handle({"id": "stuck", "input": {"workflow": workflow, "timeout_s": 1}})

        assert result["error_type"] == "timeout"
        assert "ComfyUI was restarted" in result["error"]
        assert "was stopped" not in result["error"]
        assert stubborn.process.wait(5) == -9, "ComfyUI was killed, freeing the GPU at once"

        # start.sh's part: a new ComfyUI on the same port, its PID in the same file.
        replacement = start_comfyui(tmp_path / "stubborn", port=port)
        after = await worker.handle({"id": "after", "input": {"workflow": empty_image(color=0x616161)}})
        assert "error" not in after, after
    finally:
        await worker.close()
        stubborn.stop()
        if replacement is not None:
            replacement.stop()


@pytest.mark.case_class("secrets")
async def test_secrets_never_reach_results_or_logs(run_job, use_settings, caplog, monkeypatch, then_healthy):
    caplog.set_level("DEBUG")
    monkeypatch.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")  # the job's bucket below is on 127.0.0.1
    use_settings(
        BUCKET_ENDPOINT_URL="http://127.0.0.1:9",
        BUCKET_SECRET_ACCESS_KEY="BUCKET-SECRET-42",
        BUCKET_ACCESS_KEY_ID="id",
        BUCKET_TIMEOUT_S="0.5",
        PROGRESS_WEBHOOK_SECRET="WEBHOOK-SECRET-48",
    )
    api_key = "comfy-org-SECRET-KEY-43"
    workflow = empty_image(color=0x717171)
    failed = await run_job({"workflow": workflow, "comfy_org_api_key": api_key})
    too_small = {**workflow["1"], "inputs": {**workflow["1"]["inputs"], "width": -5}}
    rejected = await run_job({"workflow": {**workflow, "1": too_small}, "comfy_org_api_key": api_key})
    # A model credential, on a model download that fails (HF_TOKEN-like token and a host header).
    credentials = {"huggingface_token": "hf_SECRET_44", "headers": {"127.0.0.1": {"Authorization": "Bearer SECRET-45"}}}
    lora_by_url = add_lora(txt2img(), "http://127.0.0.1:9/x.safetensors")
    download = await run_job({"workflow": lora_by_url, "model_credentials": credentials})
    assert failed["error_type"] == "storage_error"
    assert rejected["error_type"] == "workflow_rejected"
    assert download["error_type"] == "model_download_failed"
    # A job's own bucket, which does not answer: its keys stay out of the error and the log.
    storage = {
        "endpoint_url": "http://127.0.0.1:9",
        "bucket": "b",
        "access_key_id": "JOB-KEY-ID-46",
        "secret_access_key": "JOB-SECRET-47",
    }
    own_bucket = await run_job({"workflow": workflow, "storage": storage})
    assert own_bucket["error_type"] == "storage_error"
    # A progress webhook whose receiver is down, its URL holding a token: the signing key
    # and the token stay out of the result and the log (which names the failure).
    monkeypatch.setattr(webhooks, "RETRY_AFTER_S", (0.0, 0.0))
    hooked = await run_job({"workflow": workflow, "progress_webhook": "http://127.0.0.1:9/hook?token=HOOK-TOKEN-49"})
    await run_job.worker.settled()
    assert hooked["progress_webhook"]["failed"] >= 1
    assert "progress webhook http://127.0.0.1:9/hook" in caplog.text
    results = str(failed) + str(rejected) + str(download) + str(own_bucket) + str(hooked)
    secrets = ("BUCKET-SECRET-42", api_key, "hf_SECRET_44", "SECRET-45", "JOB-KEY-ID-46", "JOB-SECRET-47")
    for secret in (*secrets, "WEBHOOK-SECRET-48", "HOOK-TOKEN-49"):
        assert secret not in results
        assert secret not in caplog.text


@pytest.mark.case_class("malformed input")
async def test_a_flood_of_bad_jobs_leaves_the_worker_serving(run_job, then_healthy):
    bad_inputs = [
        None,
        5,
        "not json",
        [],
        {"workflow": {}},
        {"workflow": {"1": {"inputs": {}}}},
        {"workflow": empty_image(), "timeout_s": -1},
        {"workflow": empty_image(), "output": {"format": "gif"}},
    ]
    results = await asyncio.gather(*(run_job(raw) for raw in bad_inputs))
    assert {result["error_type"] for result in results} == {"invalid_input"}


def final_status(client: EndpointClient, job_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while (status := client.status(job_id))["status"] not in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
        assert time.monotonic() < deadline, f"job {job_id} still {status['status']} after {timeout_s} s"
        time.sleep(0.2)
    return status


def comfyui_tree_with_test_nodes(base: Path) -> Path:
    """A ComfyUI folder for start.sh: the pinned code linked in (start.sh runs ComfyUI and
    the worker with one Python), the tests' custom nodes, fresh input/output/temp."""
    base.mkdir()
    for item in PINNED_COMFYUI_DIR.iterdir():
        if item.name not in {"input", "output", "temp", "user", "custom_nodes"}:
            (base / item.name).symlink_to(item)
    link_custom_nodes(base / "custom_nodes")
    return base


@pytest.mark.case_class("faults between worker and ComfyUI")
def test_issue20_1_a_hung_node_in_a_young_comfyui_is_restarted_and_the_next_job_served(tmp_path):
    """start.sh, the SDK's loop and the local endpoint, with default settings: the first job
    after a cold start hangs in a node that ignores interrupts."""
    base = comfyui_tree_with_test_nodes(tmp_path / "comfyui")
    env = {
        "COMFYUI_PATH": str(base),
        "COMFY_PID_FILE": str(tmp_path / "comfyui.pid"),
        "PYTHON": str(PYTHON),
        "COMFY_EXTRA_ARGS": f"--cpu --base-directory {base}",
        "VOLUME_MODELS_DIR": str(tmp_path / "no-volume" / "models"),
        "MODEL_CACHE_DIR": str(tmp_path / "model-cache"),
        "TMPDIR": str(tmp_path),
        "STOP_GRACE_S": "1",
        "PREFETCH": "off",
    }
    env["COMFY_HOST"] = f"127.0.0.1:{free_port()}"
    log_file = tmp_path / "endpoint.log"
    with running_endpoint(env, log_file, worker_command="bash start.sh", ready_s=120) as base_url:
        client = EndpointClient(base_url, API_KEY)
        stuck = client.run(
            {"workflow": {"1": {"class_type": "StubbornSleep", "inputs": {"seconds": 600.0}}}, "timeout_s": 1}
        )
        after = client.run({"workflow": empty_image(color=0x626262)})
        first = final_status(client, stuck, timeout_s=120)
        second = final_status(client, after, timeout_s=120)
    log = log_file.read_text(errors="replace")
    assert first["status"] == "FAILED", first
    assert first["output"]["error_type"] == "timeout", first
    assert "ComfyUI was restarted" in first["error"], first
    assert second["status"] == "COMPLETED", f"{second}\n{log[-3000:]}"
    assert decode_image(second["output"]["images"][0]).getpixel((0, 0)) == (0x62, 0x62, 0x62)
    assert "the worker ended ComfyUI" in log
    assert "starting a new one" in log
    # Two jobs in flight (the default): the second waited in ComfyUI's queue behind the
    # stuck one, died with that ComfyUI, and was queued again on the new one.
    assert "queueing it again" in log, log[-3000:]


@pytest.mark.case_class("file names and files")
async def test_issue20_4_output_subfolders_the_job_made_are_removed_and_others_kept(run_job, comfyui, then_healthy):
    output = comfyui.base_dir / "output"
    kept = output / "kept"
    kept.mkdir(parents=True)
    workflow = empty_image(color=0x222222, prefix="sub/dir/x")
    for node_id, prefix in (("3", "a/img"), ("4", "b/img"), ("5", "kept/img")):
        workflow[node_id] = {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["1", 0]}}
    try:
        result = await run_job({"workflow": workflow})
        assert "error" not in result, result
        assert len(result["images"]) == 4
        assert not any((output / name).exists() for name in ("sub", "a", "b")), sorted(output.rglob("*"))
        assert kept.is_dir(), "a folder that was there stays, emptied of the job's files"
        assert not any(kept.iterdir()), "a folder that was there stays, emptied of the job's files"
    finally:
        kept.rmdir()


@pytest.mark.case_class("faults between worker and ComfyUI")
async def test_issue20_5_a_stalled_bucket_is_bounded_by_the_jobs_timeout(run_job, use_settings, then_healthy):
    with stalled_server() as bucket:
        use_settings(
            BUCKET_ENDPOINT_URL=bucket,
            BUCKET_ACCESS_KEY_ID="id",
            BUCKET_SECRET_ACCESS_KEY="secret",
            BUCKET_NAME="outputs",
            BUCKET_TIMEOUT_S="30",
        )
        result = await run_job({"workflow": empty_image(color=0x232323), "timeout_s": 2})
    # Without a bound, boto3 gives up after 2 x BUCKET_TIMEOUT_S (60 s) with a storage_error.
    assert result["error_type"] == "timeout", result
    assert "delivering the outputs" in result["error"]
    assert "timeout of 2 s" in result["error"]
