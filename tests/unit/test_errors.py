import json

import pytest

from comfy_worker.core.errors import (
    ERROR_MESSAGE_MAX_CHARS,
    LISTED_PROBLEMS,
    ComfyError,
    ComfyUnavailable,
    InternalError,
    InvalidJobInput,
    error_result,
    hide_paths,
)


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


def test_n3_an_input_with_thousands_of_problems_lists_the_first_and_counts_the_rest():
    problems = [(f"input.workflow.{n}.class_type", f"node {n} has an unknown type") for n in range(20_000)]
    result = error_result(InvalidJobInput(problems))
    assert len(result["details"]["problems"]) == LISTED_PROBLEMS
    assert result["details"]["more_problems"] == 20_000 - LISTED_PROBLEMS
    assert result["error"].endswith(f"; and {20_000 - LISTED_PROBLEMS} more problem(s)")
    assert len(json.dumps(result)) < 5_000


def test_n3_an_error_result_stays_small_whatever_it_quotes():
    result = error_result(ComfyError("x" * 1_000_000, {"traceback": ["line"] * 1_000_000}))
    assert len(result["error"]) < ERROR_MESSAGE_MAX_CHARS + 100
    assert result["error"].endswith("more characters)")
    assert result["details"] == {
        "omitted": f"the details were {len(json.dumps(['line'] * 1_000_000)) + 15} bytes of JSON"
    }


def test_an_unexpected_os_error_names_no_machine_path():
    result = error_result(InternalError.from_exception(FileNotFoundError(2, "No such file or directory", "/comfyui/x")))
    assert result["error"] == (
        "internal error in the worker: FileNotFoundError: No such file or directory "
        "(the worker's log has the traceback)"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "[Errno 36] File name too long: '/tmp/x/comfyui/output/pp_00001_.png.writing'",
            "[Errno 36] File name too long: 'pp_00001_.png.writing'",
        ),
        ('File "/comfyui/nodes.py", line 1620, in save_images', 'File "nodes.py", line 1620, in save_images'),
        (
            "could not fetch https://cdn.example.com/a/b.png: HTTP 404",
            "could not fetch https://cdn.example.com/a/b.png: HTTP 404",
        ),
        ("ratio 1/2 and a/b/c stay", "ratio 1/2 and a/b/c stay"),
    ],
)
def test_24_machine_paths_are_shortened_to_file_names(text, shown):
    assert hide_paths(text) == shown
