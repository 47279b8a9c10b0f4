"""The Worker against a scripted ComfyUI and an in-memory store: the job's story, the
error boundary and every clean-up path, in milliseconds."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from pathlib import Path

import pytest

from comfy_worker.comfyui.comfy_process import ComfyProcess
from comfy_worker.core.errors import ComfyError, WorkflowRejected
from comfy_worker.request.workflow import JOB_TAG_INPUT
from tests.support.fake_comfy import FakeComfy, Run, png_bytes
from tests.support.fake_store import FakeStore

PNG_BASE64 = base64.b64encode(png_bytes()).decode()
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4}, "_meta": {"title": "Blank"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}


def job_files(comfyui_path: Path) -> set[Path]:
    """What a job could leave behind (the node snapshot beside them is the worker's own)."""
    folders = [comfyui_path / name for name in ("input", "output", "temp")]
    return {path for folder in folders for path in folder.rglob("*") if path.is_file()}


async def test_a_job_runs_and_leaves_nothing_behind(make_worker, comfy, comfyui_path, progress):
    worker = make_worker()
    image = base64.b64encode(png_bytes()).decode()

    result = await worker.handle(
        {"id": "job-1", "input": {"workflow": WORKFLOW, "images": [{"name": "in.png", "image": image}]}}
    )

    assert "error" not in result, result
    [entry] = result["images"]
    assert base64.b64decode(entry["data"]) == png_bytes()
    assert entry["node_id"] == "2"
    [prompt] = comfy.prompts.values()
    assert prompt["2"]["inputs"][JOB_TAG_INPUT].startswith("job-1/")
    assert JOB_TAG_INPUT not in prompt["1"]["inputs"]
    assert progress[0]["status"] == "queued"
    assert progress[-1]["progress"] == 1.0
    assert any(update["message"] == "Blank" for update in progress), "titles come from the workflow"
    assert job_files(comfyui_path) == set()
    assert list(comfy.histories) == [prompt_id for prompt_id in comfy.prompts], "forgotten after the result"
    await worker.settled()
    assert comfy.histories == {}
    assert set(result["timings"]) >= {"execute_s", "collect_outputs_s", "total_s"}


async def test_a_dropped_event_stream_is_survived_from_the_history(make_worker, comfy, comfyui_path):
    comfy.runs.append(Run.success(drop_after=3))
    worker = make_worker()

    result = await worker.handle({"id": "drop", "input": {"workflow": WORKFLOW}})

    assert "error" not in result, result
    assert comfy.calls.count("reconnect_events") == 1
    assert len(result["images"]) == 1
    assert job_files(comfyui_path) == set()


async def test_a_failure_missed_while_disconnected_is_read_from_the_history(make_worker, comfy):
    comfy.runs.append(Run.failure("2", "SaveImage", "disk full", drop_after=2))
    worker = make_worker()

    result = await worker.handle({"id": "drop-fail", "input": {"workflow": WORKFLOW}})

    assert result["error_type"] == "execution_failed"
    assert result["details"]["node_id"] == "2"
    assert "disk full" in result["error"]


async def test_a_drop_with_comfyui_dead_fails_at_once_and_asks_for_a_new_worker(make_worker, comfy, tmp_path):
    pid_file = tmp_path / "comfy.pid"
    comfy.runs.append(Run.success(drop_after=2))
    worker = make_worker(pid_file=pid_file)
    comfy.on_drop = lambda: pid_file.write_text("not a pid: the process is gone")  # the drop's cause

    first = await worker.handle({"id": "dies", "input": {"workflow": WORKFLOW}})
    second = await worker.handle({"id": "next", "input": {"workflow": WORKFLOW}})

    assert first["error_type"] == second["error_type"] == "comfyui_unavailable"
    assert first["refresh_worker"] is True
    assert "close" in comfy.calls
    assert "reconnect_events" not in comfy.calls, "no reconnect to a dead ComfyUI"
    assert comfy.calls.count("queue_prompt") == 1, "no job is submitted to a dead ComfyUI"


async def test_timeout_interrupts_the_prompt_and_cleans_up(make_worker, comfy, comfyui_path):
    comfy.runs.append(Run.success(hang=True))
    worker = make_worker()

    result = await worker.handle({"id": "slow", "input": {"workflow": WORKFLOW, "timeout_s": 0.05}})

    assert result["error_type"] == "timeout"
    assert result["details"] == {"timeout_s": 0.05}
    assert [place for _, place in comfy.cancelled] == ["running"]
    assert "forget_history" in comfy.calls
    assert job_files(comfyui_path) == set()


async def test_cancel_interrupts_the_prompt_and_reaches_the_sdk(make_worker, comfy):
    comfy.runs.append(Run.success(hang=True))
    worker = make_worker()
    job = asyncio.create_task(worker.handle({"id": "cancelled", "input": {"workflow": WORKFLOW}}))
    while comfy.running is None:  # noqa: ASYNC110 (the fake sets it synchronously)
        await asyncio.sleep(0)

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert [place for _, place in comfy.cancelled] == ["running"]
    assert comfy.histories == {}


async def test_n2_a_shutdown_fails_the_jobs_still_in_flight_naming_it_and_stops_their_prompts(make_worker, comfy):
    """start.sh's SIGUSR1 when SHUTDOWN_GRACE_S runs out: the job returns a result that names
    the shutdown (not the SDK's cancel), and its prompt is interrupted."""
    comfy.runs.append(Run.success(hang=True))
    worker = make_worker()
    job = asyncio.create_task(worker.handle({"id": "draining", "input": {"workflow": WORKFLOW}}))
    while comfy.running is None:  # noqa: ASYNC110 (the fake sets it synchronously)
        await asyncio.sleep(0)

    worker.abandon_jobs()  # as from the signal handler: handed to the jobs' loop
    result = await job

    assert result["error_type"] == "worker_shut_down"
    assert result["refresh_worker"] is True
    assert "SHUTDOWN_GRACE_S" in result["error"]
    assert "send the job again" in result["error"]
    assert [place for _, place in comfy.cancelled] == ["running"]
    assert comfy.histories == {}


async def test_a_failing_cleanup_step_neither_skips_the_others_nor_replaces_the_result(
    make_worker, comfy, comfyui_path, caplog
):
    comfy.fail_on["forget_history"] = RuntimeError("history endpoint broke")
    worker = make_worker()

    with caplog.at_level(logging.WARNING):
        result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW}})
        await worker.settled()  # the history is forgotten after the result

    assert "error" not in result
    assert len(result["images"]) == 1
    assert job_files(comfyui_path) == set(), "the files were removed although an earlier step failed"
    assert "history endpoint broke" in caplog.text


async def test_an_unsafe_path_in_a_failed_prompts_history_keeps_the_jobs_error(make_worker, comfy, comfyui_path):
    # Node 2 reports a partial output outside the output folder, then node 3 fails.
    workflow = {**WORKFLOW, "3": {"class_type": "KSampler", "inputs": {}}}
    comfy.runs.append(Run.failure("3", "KSampler", "boom", subfolder="../.."))
    worker = make_worker()
    image = base64.b64encode(png_bytes()).decode()

    result = await worker.handle(
        {"id": "j", "input": {"workflow": workflow, "images": [{"name": "in.png", "image": image}]}}
    )

    assert result["error_type"] == "execution_failed"
    assert "boom" in result["error"]
    assert job_files(comfyui_path) == set(), "the uploaded input was still removed"
    assert comfy.histories == {}, "the history was still forgotten"


async def test_an_unsafe_output_path_is_refused_without_touching_it(make_worker, comfy, comfyui_path):
    outside = comfyui_path.parent / "precious.png"
    outside.write_bytes(b"keep me")
    comfy.runs.append(Run.success(subfolder="../.."))
    worker = make_worker()

    result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW}})

    assert result["error_type"] == "unsafe_path"
    assert outside.read_bytes() == b"keep me"


async def test_an_unexpected_exception_is_an_internal_error_logged_once(make_worker, comfy, caplog):
    comfy.fail_on["queue_prompt"] = KeyError("prompt_id")
    worker = make_worker()

    with caplog.at_level(logging.ERROR):
        result = await worker.handle({"id": "bug", "input": {"workflow": WORKFLOW}})

    assert result["error_type"] == "internal_error"
    assert "KeyError" in result["error"]
    assert [r.exc_info is not None for r in caplog.records if r.levelno >= logging.ERROR] == [True]
    comfy.fail_on.clear()
    assert "error" not in await worker.handle({"id": "after", "input": {"workflow": WORKFLOW}})


async def test_outputs_go_to_the_store_under_job_subfolder_and_name(make_worker, comfy):
    store = FakeStore()
    comfy.runs.append(Run.success(subfolder="portraits"))
    worker = make_worker(store=store)

    result = await worker.handle({"id": "job-7", "input": {"workflow": WORKFLOW}})

    [entry] = result["images"]
    [name] = store.objects
    assert name.startswith("job-7/portraits/fake_2_")
    assert entry["type"] == "s3_url"
    assert entry["data"] == f"https://store.invalid/{name}"
    assert store.objects[name] == (png_bytes(), "image/png")


async def test_a_store_failure_is_a_storage_error(make_worker):
    worker = make_worker(store=FakeStore(fail=True))
    result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW}})
    assert result["error_type"] == "storage_error"


async def test_s3_without_a_store_is_refused_before_comfyui_works(make_worker, comfy):
    worker = make_worker(store=None)
    result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW, "output": {"storage": "s3"}}})
    assert result["error_type"] == "invalid_input"
    assert comfy.prompts == {}


async def test_two_jobs_in_flight_each_get_their_own_outputs_and_progress(make_worker, comfy, comfyui_path):
    comfy.runs += [Run.success(node_s=0.05), Run.success(node_s=0.05, subfolder="b")]
    worker = make_worker()
    updates: dict[str, list[dict]] = {"a": [], "b": []}
    worker._progress = lambda job, payload: updates[job["id"]].append(payload)

    first, second = await asyncio.gather(
        worker.handle({"id": "a", "input": {"workflow": WORKFLOW}}),
        worker.handle({"id": "b", "input": {"workflow": WORKFLOW}}),
    )

    assert "error" not in first, (first, second)
    assert "error" not in second, (first, second)
    assert [image["subfolder"] for image in first["images"] + second["images"]] == ["", "b"]
    assert comfy.calls.count("queue_prompt") == 2
    waiting = [update for update in updates["b"] if update["status"] == "queued"]
    assert {"jobs_ahead": 1, "message": "waiting in ComfyUI's queue: 1 job ahead"}.items() <= waiting[1].items()
    assert waiting[-1]["jobs_ahead"] == 0, "told when the job ahead ended"
    assert all(update.get("jobs_ahead", 0) == 0 for update in updates["a"]), "a never waited behind b"
    assert updates["a"][-1]["progress"] == updates["b"][-1]["progress"] == 1.0
    assert job_files(comfyui_path) == set()


async def test_the_timeout_counts_from_the_prompts_own_start(make_worker, comfy):
    comfy.runs += [Run.success(node_s=0.15), Run.success()]
    worker = make_worker()

    first, second = await asyncio.gather(
        worker.handle({"id": "a", "input": {"workflow": WORKFLOW}}),
        worker.handle({"id": "b", "input": {"workflow": WORKFLOW, "timeout_s": 0.2}}),
    )

    assert "error" not in first, first
    assert "error" not in second, "0.3 s behind the first job, but its own run is short: no timeout"


async def test_a_cancelled_queued_job_leaves_the_running_one_alone(make_worker, comfy):
    comfy.runs += [Run.success(hang=True), Run.success()]
    worker = make_worker()
    running = asyncio.ensure_future(worker.handle({"id": "a", "input": {"workflow": WORKFLOW}}))
    while comfy.running is None:  # noqa: ASYNC110 (the fake's state)
        await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(worker.handle({"id": "b", "input": {"workflow": WORKFLOW}}))
    while not comfy.pending:  # noqa: ASYNC110 (the fake's state)
        await asyncio.sleep(0.01)

    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert [place for _, place in comfy.cancelled] == ["pending"], "the running prompt is untouched"
    assert comfy.running is not None
    assert not running.done()

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert "running" in [place for _, place in comfy.cancelled]
    assert comfy.running is None


class RestartingProcess(ComfyProcess):
    """A ComfyUI process that start.sh restarts whenever the worker ends it."""

    def __init__(self, pid_file: Path, comfy: FakeComfy):
        super().__init__(pid_file)
        self.comfy = comfy
        self.kills = 0

    def kill(self) -> bool:
        self.kills += 1
        self.comfy.restart()
        return True


async def test_a_job_queued_behind_a_hung_prompt_is_queued_again_on_the_restarted_comfyui(
    make_worker, comfy, comfyui_path, tmp_path
):
    comfy.runs += [Run.success(hang=True), Run.success(), Run.success()]
    comfy.ignores_interrupts = True  # the hung node never notices
    worker = make_worker(stop_grace_s=0.1)
    process = RestartingProcess(tmp_path / "no-pid-file", comfy)
    worker.comfyui.process = process

    hung, behind = await asyncio.gather(
        worker.handle({"id": "a", "input": {"workflow": WORKFLOW, "timeout_s": 0.1}}),
        worker.handle({"id": "b", "input": {"workflow": WORKFLOW}}),
    )

    assert hung["error_type"] == "timeout"
    assert "ComfyUI was restarted" in hung["error"]
    assert "error" not in behind, behind
    assert process.kills == 1, "b was queued once more"
    assert comfy.calls.count("queue_prompt") == 3, "b was queued once more"
    assert len(behind["images"]) == 1
    assert job_files(comfyui_path) == set()


async def test_comfyui_dying_fails_every_job_in_flight_and_asks_for_a_new_worker(make_worker, comfy, tmp_path):
    pid_file = tmp_path / "comfy.pid"
    comfy.runs += [Run.success(drop_after=2), Run.success()]
    worker = make_worker(pid_file=pid_file)
    comfy.on_drop = lambda: pid_file.write_text("not a pid: the process is gone")

    results = await asyncio.gather(
        worker.handle({"id": "a", "input": {"workflow": WORKFLOW}}),
        worker.handle({"id": "b", "input": {"workflow": WORKFLOW}}),
    )

    assert [result["error_type"] for result in results] == ["comfyui_unavailable"] * 2
    assert all(result["refresh_worker"] is True for result in results)
    assert "ComfyUI died during the job" in results[0]["error"]


async def test_a_taken_input_name_is_neither_replaced_nor_removed(make_worker, comfy, comfyui_path):
    baked = comfyui_path / "input" / "in.png"
    baked.write_bytes(b"baked into the image")
    (comfyui_path / "input" / "empty-but-mine").mkdir()
    workflow = {**WORKFLOW, "3": {"class_type": "LoadImage", "inputs": {"image": "in.png"}}}
    worker = make_worker()

    result = await worker.handle(
        {"id": "j", "input": {"workflow": workflow, "images": [{"name": "in.png", "image": PNG_BASE64}]}}
    )

    assert "error" not in result, result
    [prompt] = comfy.prompts.values()
    placed = prompt["3"]["inputs"]["image"]
    assert placed.startswith("_job-"), "the job's file went to a folder of its own"
    assert placed.endswith("/in.png"), "the job's file went to a folder of its own"
    assert baked.read_bytes() == b"baked into the image"
    assert (comfyui_path / "input" / "empty-but-mine").is_dir()
    assert job_files(comfyui_path) == {baked}
    assert sorted(p.name for p in (comfyui_path / "input").iterdir()) == [
        "empty-but-mine",
        "in.png",
    ]


async def test_a_cancel_while_the_prompt_is_being_queued_still_stops_it(make_worker, comfy):
    comfy.runs.append(Run.success(hang=True))
    queued = comfy.queue_prompt
    answering = asyncio.Event()

    async def slow_queue_prompt(prompt, extra_data):
        prompt_id = await queued(prompt, extra_data)  # ComfyUI has it...
        answering.set()
        await asyncio.sleep(0.2)  # ...but its answer is still on the way
        return prompt_id

    comfy.queue_prompt = slow_queue_prompt
    worker = make_worker()
    job = asyncio.create_task(worker.handle({"id": "j", "input": {"workflow": WORKFLOW}}))
    await answering.wait()

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert "running" in [place for _, place in comfy.cancelled]
    assert comfy.running is None
    assert comfy.histories == {}, "the prompt was released, not orphaned"


async def test_a_prompt_that_ignores_the_interrupt_gets_comfyui_restarted(make_worker, comfy, tmp_path):
    pid_file = tmp_path / "comfy.pid"
    # A stand-in ComfyUI process: it listens, as the real one does once it serves.
    serving = "import socket, time; server = socket.create_server(('127.0.0.1', 0)); time.sleep(60)"
    sleeper = await asyncio.create_subprocess_exec(sys.executable, "-c", serving)
    pid_file.write_text(str(sleeper.pid))
    for _ in range(250):  # until it listens
        if ComfyProcess(pid_file).listens():
            break
        await asyncio.sleep(0.02)
    comfy.runs.append(Run.success(hang=True))
    comfy.ignores_interrupts = True  # the node never notices
    worker = make_worker(pid_file=pid_file, stop_grace_s=0.1)

    result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW, "timeout_s": 0.05}})

    assert result["error_type"] == "timeout"
    assert "ComfyUI was restarted" in result["error"]
    assert "was stopped" not in result["error"]
    assert "refresh_worker" not in result
    assert await asyncio.wait_for(sleeper.wait(), 5) == -9, "ComfyUI was killed"
    assert not worker.comfyui.process.is_dead(), "a restart is awaited, not a death reported"


async def test_a_refused_model_is_explained_with_what_is_installed(make_worker, comfy):
    comfy.fail_on["queue_prompt"] = WorkflowRejected.from_comfy(
        {"type": "prompt_outputs_failed_validation"},
        [
            {
                "node_id": "1", "class_type": "CheckpointLoaderSimple", "type": "value_not_in_list",
                "message": "Value not in list", "details": "...", "input": "ckpt_name",
                "received_value": "sd16.safetensors",
            }
        ],
    )  # fmt: skip
    worker = make_worker()
    workflow = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd16.safetensors"}}}

    result = await worker.handle({"id": "missing", "input": {"workflow": workflow}})

    assert result["error_type"] == "workflow_rejected"
    assert (
        "'sd16.safetensors' is not installed; closest: 'sd15.safetensors'; searched /models/checkpoints"
        in result["error"]
    )


async def test_a_list_job_answers_without_a_prompt(make_worker, comfy):
    result = await make_worker().handle({"id": "list", "input": {"list": "workflows"}})
    assert result == {"workflows": []}
    assert "queue_prompt" not in comfy.calls


async def test_issue20_7_a_history_entry_that_could_not_be_deleted_is_deleted_at_the_next_job(make_worker, comfy):
    worker = make_worker()
    comfy.fail_on["forget_history"] = ComfyError("HTTP 503 on POST /history")
    first = await worker.handle({"id": "first", "input": {"workflow": WORKFLOW}})
    await worker.settled()
    assert "error" not in first, "the delete failed"
    assert list(comfy.histories) == ["prompt-1"], "the delete failed"

    del comfy.fail_on["forget_history"]
    second = await worker.handle({"id": "second", "input": {"workflow": WORKFLOW}})
    await worker.settled()

    assert "error" not in second
    assert comfy.histories == {}, "the first prompt's entry was deleted when the next job started"


async def test_issue20_2_an_interrupt_comfyui_never_takes_is_named_as_such(make_worker, comfy):
    comfy.runs.append(Run.success(hang=True))
    comfy.fail_on["cancel"] = ComfyError("POST /interrupt: HTTP 503")
    worker = make_worker(stop_grace_s=1.0)  # no PID file: ComfyUI cannot be restarted

    result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW, "timeout_s": 0.05}})

    assert comfy.calls.count("cancel") == 3, "tried again before giving up"
    assert result["error_type"] == "timeout"
    assert (
        "ComfyUI did not accept the interrupt (the cancel failed 3 time(s): POST /interrupt: HTTP 503)"
        in (result["error"])
    )
    assert "ignored the interrupt" not in result["error"]
    assert result["refresh_worker"] is True, "nobody can restart ComfyUI: the worker asks to be replaced"


async def test_issue20_6_an_unknown_node_type_in_an_api_workflow_names_the_node_and_what_to_add(make_worker, comfy):
    workflow = {**WORKFLOW, "3": {"class_type": "SaveImages", "inputs": {}, "_meta": {"title": "Keep"}}}
    result = await make_worker().handle({"id": "j", "input": {"workflow": workflow}})
    assert result["error_type"] == "invalid_input"
    [problem] = result["details"]["problems"]
    assert problem["field"] == "input.workflow.3.class_type"
    assert problem["problem"] == (
        "node 3 'Keep' has type 'SaveImages', which this ComfyUI does not have (did you mean 'SaveImage'?); "
        "if a custom node provides it, add its package to ComfyUI/custom_nodes.json"
    )
    assert "queue_prompt" not in comfy.calls


async def test_issue20_8_a_failed_stop_after_a_cancel_during_submit_is_logged(make_worker, comfy, caplog):
    answering = asyncio.Event()

    async def failing_queue_prompt(prompt, extra_data):
        answering.set()
        await asyncio.sleep(0.1)
        raise ComfyError("POST /prompt: HTTP 500")

    comfy.queue_prompt = failing_queue_prompt
    job = asyncio.create_task(make_worker().handle({"id": "j", "input": {"workflow": WORKFLOW}}))
    await answering.wait()

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert "may not have been stopped" in caplog.text
    assert "HTTP 500" in caplog.text


async def test_saveimage_runs_as_the_background_saver_where_comfyui_has_it(make_worker, comfy):
    comfy.object_info_data = {**comfy.object_info_data, "WorkerSaveImage": {"output_node": True}}
    worker = make_worker()

    result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW}})

    assert "error" not in result, result
    [prompt] = comfy.prompts.values()
    assert prompt["2"]["class_type"] == "WorkerSaveImage"
    assert prompt["1"]["class_type"] == "EmptyImage"


async def test_outputs_come_from_the_prompts_events_without_reading_the_history(make_worker, comfy):
    comfy.fail_on["history"] = ComfyError("GET /history waits for ComfyUI's garbage collection")
    worker = make_worker()

    result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW}})

    assert "error" not in result, result
    assert len(result["images"]) == 1
    assert "history" not in comfy.calls


async def test_outputs_are_read_from_the_history_when_events_were_lost(make_worker, comfy):
    comfy.runs.append(Run.success(drop_after=2))  # the stream drops before the image is reported
    worker = make_worker()

    result = await worker.handle({"id": "j", "input": {"workflow": WORKFLOW}})

    assert "error" not in result, result
    assert len(result["images"]) == 1
    assert "history" in comfy.calls


async def test_every_result_carries_its_provenance_and_a_replay_that_would_differ_runs_nothing(make_worker, comfy):
    worker = make_worker()
    result = await worker.handle({"id": "first", "input": {"workflow": WORKFLOW, "randomize_seeds": False}})
    provenance = result["provenance"]
    assert provenance["workflow"] == WORKFLOW
    assert set(provenance) == {"comfyui", "node_packs", "models", "seeds", "workflow"}

    replayed = await worker.handle({"id": "again", "input": {"replay": provenance}})
    assert "error" not in replayed, replayed
    assert replayed["provenance"] == provenance
    assert len(comfy.prompts) == 2

    elsewhere = {**provenance, "comfyui": {**provenance["comfyui"], "commit": "0" * 40}}
    refused = await worker.handle({"id": "refused", "input": {"replay": elsewhere}})
    assert refused["error_type"] == "replay_refused"
    assert refused["details"]["differences"] == [
        f"ComfyUI commit {'0' * 40} ran it; this worker has {provenance['comfyui']['commit']}"
    ]
    assert len(comfy.prompts) == 2, "a refused replay queues nothing"
