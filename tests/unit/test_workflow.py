from comfy_worker.job_input import parse_job_input
from comfy_worker.workflow import JOB_TAG_INPUT, Workflow, output_node_classes

NODES = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m"}, "_meta": {"title": "Model"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}


def test_output_node_classes_from_object_info():
    info = {"SaveImage": {"output_node": True}, "KSampler": {"output_node": False}, "Old": {}}
    assert output_node_classes(info) == {"SaveImage"}


def test_only_output_nodes_are_tagged_and_the_original_is_unchanged():
    workflow = Workflow(NODES)
    tagged = workflow.tagged("job-1", frozenset({"SaveImage"}))
    prompt = tagged.to_prompt()
    assert prompt["1"] == NODES["1"]
    assert prompt["2"]["inputs"] == {"images": ["1", 0], JOB_TAG_INPUT: "job-1"}
    assert JOB_TAG_INPUT not in workflow.to_prompt()["2"]["inputs"]
    assert tagged != workflow and tagged.output_nodes(frozenset({"SaveImage"})) == ["2"]


def test_names_and_classes_of_nodes():
    workflow = Workflow(NODES)
    assert (workflow.title("1"), workflow.class_type("1")) == ("Model", "CheckpointLoaderSimple")
    assert (workflow.title("2"), workflow.display_name("2")) == (None, "SaveImage")
    assert workflow.class_type(None) is None and workflow.display_name("9") == "node 9"
    assert list(workflow) == ["1", "2"] and len(workflow) == 2 and "2" in workflow


def test_the_parsed_workflow_is_the_sent_json():
    request = parse_job_input({"workflow": NODES})
    assert request.workflow == Workflow(NODES)
    assert request.workflow.to_prompt() == NODES
