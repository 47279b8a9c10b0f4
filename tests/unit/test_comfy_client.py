from comfy_worker.comfyui.comfy_client import rejection_from_response


def test_rejection_names_node_class_input_and_message():
    body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "3": {
                "class_type": "KSampler",
                "dependent_outputs": ["9"],
                "errors": [
                    {
                        "type": "value_smaller_than_min",
                        "message": "Value 0 smaller than min of 1",
                        "details": "steps",
                        "extra_info": {"input_name": "steps"},
                    }
                ],
            }
        },
    }
    error = rejection_from_response(body)
    assert error.message == (
        "workflow rejected by ComfyUI: node 3 (KSampler) input 'steps': Value 0 smaller than min of 1 - steps"
    )
    assert error.details["node_errors"][0]["class_type"] == "KSampler"


def test_rejection_without_node_errors_uses_the_prompt_error():
    body = {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node Nope does not exist.",
            "details": "Node ID '#1'",
        },
        "node_errors": {},
    }
    assert rejection_from_response(body).message == (
        "workflow rejected by ComfyUI: Cannot execute because node Nope does not exist. (Node ID '#1')"
    )
