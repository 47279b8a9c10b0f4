from comfy_worker.execution import JOB_TAG_INPUT, output_node_classes, tag_output_nodes


def test_output_node_classes_from_object_info():
    info = {"SaveImage": {"output_node": True}, "KSampler": {"output_node": False}, "Old": {}}
    assert output_node_classes(info) == {"SaveImage"}


def test_only_output_nodes_are_tagged_and_the_input_is_not_changed():
    workflow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }
    tagged = tag_output_nodes(workflow, frozenset({"SaveImage"}), "job-1")
    assert tagged["1"] == workflow["1"]
    assert tagged["2"]["inputs"] == {"images": ["1", 0], JOB_TAG_INPUT: "job-1"}
    assert JOB_TAG_INPUT not in workflow["2"]["inputs"]
