import asyncio
import gc

import pytest

from comfy_worker.comfyui.comfy_api import ComfyEvent
from comfy_worker.comfyui.comfy_events import EventRouter, PromptEvents
from comfy_worker.comfyui.prompt import _follow_events, execution_error, stop_prompt
from comfy_worker.core.errors import ExecutionFailed
from tests.support.fake_comfy import FakeComfy


def test_execution_error_names_node_and_exception():
    error = execution_error(
        {
            "node_id": "4",
            "node_type": "VAEDecode",
            "exception_type": "torch.OutOfMemoryError",
            "exception_message": "CUDA out of memory\n",
            "traceback": ["line"],
        }
    )
    assert isinstance(error, ExecutionFailed)
    assert error.message == "node 4 (VAEDecode) failed: torch.OutOfMemoryError: CUDA out of memory"
    assert error.details["traceback"] == ["line"]


async def test_stopping_a_finished_prompt_does_nothing(tmp_path):
    comfy = FakeComfy(tmp_path)
    stop = await stop_prompt(comfy, PromptEvents(EventRouter(comfy), "prompt-already-done"), grace_s=1)
    assert comfy.calls == ["cancel"]
    assert comfy.cancelled == []
    assert stop.stopped


async def test_stopping_a_queued_prompt_removes_it_from_the_queue(tmp_path):
    comfy = FakeComfy(tmp_path)
    comfy.pending.append("prompt-waiting")
    await stop_prompt(comfy, PromptEvents(EventRouter(comfy), "prompt-waiting"), grace_s=1)
    assert comfy.pending == []
    assert comfy.cancelled == [("prompt-waiting", "pending")]


async def test_issue20_8_a_cancel_as_the_prompt_fails_leaves_no_unretrieved_task_exception(caplog, tmp_path):
    """The event reader ends with the prompt's failure in the same instant the job is
    cancelled: its exception must not surface later as 'never retrieved'."""
    comfy = FakeComfy(tmp_path)
    events = PromptEvents(EventRouter(comfy), "p")
    following = asyncio.ensure_future(_follow_events(comfy, events, lambda event: None, silence_check_s=60))
    await asyncio.sleep(0.01)
    events._put(ComfyEvent("execution_interrupted", {"prompt_id": "p", "node_id": "3", "node_type": "KSampler"}))
    events._put(ComfyEvent("executing", {"prompt_id": "p", "node": None}))
    following.cancel()
    with pytest.raises(asyncio.CancelledError):
        await following
    await asyncio.sleep(0.01)
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
