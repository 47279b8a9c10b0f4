from comfy_worker.errors import ExecutionFailed
from comfy_worker.prompt import execution_error, stop_prompt
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
    await stop_prompt(comfy, "prompt-already-done", grace_s=1)
    assert comfy.calls == ["queue"]


async def test_stopping_a_queued_prompt_removes_it_from_the_queue(tmp_path):
    comfy = FakeComfy(tmp_path)
    comfy.pending.append("prompt-waiting")
    await stop_prompt(comfy, "prompt-waiting", grace_s=1)
    assert comfy.pending == [] and "interrupt" not in comfy.calls
