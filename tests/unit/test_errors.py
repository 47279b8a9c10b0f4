from comfy_worker.errors import ComfyUnavailable, InternalError, InvalidJobInput, error_result


def test_error_result_is_a_string_error_with_type_and_details():
    result = error_result(InvalidJobInput([("input.workflow", "is required")]))
    assert result == {
        "error": "invalid job input: input.workflow: is required",
        "error_type": "invalid_input",
        "details": {"problems": [{"field": "input.workflow", "problem": "is required"}]},
    }


def test_comfy_unavailable_asks_for_a_new_worker():
    assert error_result(ComfyUnavailable("gone"))["refresh_worker"] is True


def test_an_unexpected_exception_becomes_an_internal_error():
    result = error_result(InternalError.from_exception(KeyError("prompt_id")))
    assert result == {
        "error": "internal error in the worker: KeyError: 'prompt_id' (the worker's log has the traceback)",
        "error_type": "internal_error",
        "details": {"exception_type": "KeyError"},
    }
