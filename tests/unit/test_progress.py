import asyncio
import base64
import struct

from comfy_worker.comfy_api import ComfyEvent
from comfy_worker.progress import Change, ProgressRelay, ProgressTracker
from comfy_worker.workflow import Workflow

WORKFLOW = Workflow(
    {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
        "2": {"class_type": "KSampler", "inputs": {}, "_meta": {"title": "Base"}},
        "3": {"class_type": "KSampler", "inputs": {}, "_meta": {"title": "Refiner"}},
        "4": {"class_type": "SaveImage", "inputs": {}},
    }
)


def event(type_: str, **data) -> ComfyEvent:
    return ComfyEvent(type_, {"prompt_id": "p", **data})


def tracker(preview: bool = False, max_bytes: int = 1000) -> ProgressTracker:
    return ProgressTracker(WORKFLOW, preview, max_bytes, started_at=0.0)


def run(t: ProgressTracker, events: list[ComfyEvent]) -> list[float]:
    fractions = []
    for e in events:
        if t.apply(e) is not Change.NONE:
            fractions.append(t.payload()["progress"])
    return fractions


def sampler(node: str, steps: int) -> list[ComfyEvent]:
    return [event("executing", node=node)] + [
        event("progress", node=node, value=i, max=steps) for i in range(1, steps + 1)
    ]


def test_two_samplers_rise_monotonically_and_end_at_one():
    t = tracker()
    events = [event("execution_start"), event("execution_cached", nodes=["1"])]
    events += sampler("2", 4) + sampler("3", 4) + [event("executing", node="4"), event("executed", node="4")]
    fractions = run(t, events)
    assert fractions == sorted(fractions)
    assert fractions[-1] < 1.0
    t.finish()
    assert t.payload()["progress"] == 1.0


def test_payload_names_node_title_step_and_counts():
    t = tracker()
    run(t, [event("execution_start"), event("execution_cached", nodes=["1"])] + sampler("2", 10)[:4])
    payload = t.payload()
    assert payload["status"] == "running"
    assert payload["message"] == "Base: step 3/10"
    assert (payload["node_id"], payload["node_class"], payload["node_title"]) == ("2", "KSampler", "Base")
    assert (payload["step"], payload["max"]) == (3, 10)
    assert (payload["nodes_done"], payload["nodes_total"]) == (1, 4)
    assert payload["progress"] == round((1 + 0.3) / 4, 4)


def test_first_and_last_step_and_node_changes_must_be_sent():
    t = tracker()
    changes = [t.apply(e) for e in sampler("2", 3)]
    assert changes == [Change.MILESTONE, Change.MILESTONE, Change.ROUTINE, Change.MILESTONE]


def test_events_that_change_nothing_are_not_offered():
    assert tracker().apply(event("status")) is Change.NONE
    assert tracker().apply(event("executing", node=None)) is Change.NONE


def preview_frame(image: bytes, image_format: int = 1) -> ComfyEvent:
    return ComfyEvent("preview_frame", {}, binary=struct.pack(">II", 1, image_format) + image)


def test_preview_only_when_wanted_and_small_enough():
    assert tracker(preview=False).apply(preview_frame(b"jpeg")) is Change.NONE
    t = tracker(preview=True, max_bytes=10)
    assert t.apply(preview_frame(b"x" * 11)) is Change.NONE
    assert t.apply(preview_frame(b"jpeg")) is Change.ROUTINE
    assert t.payload()["preview"] == {"mime_type": "image/jpeg", "data": base64.b64encode(b"jpeg").decode()}


async def test_relay_throttles_the_middle_and_flushes_the_newest():
    sent = []
    relay = ProgressRelay(sent.append, updates_per_s=20)  # one per 50 ms
    relay.offer({"n": 1}, change=Change.ROUTINE)
    relay.offer({"n": 2}, change=Change.ROUTINE)
    relay.offer({"n": 3}, change=Change.ROUTINE)
    relay.offer({"n": 4}, change=Change.MILESTONE)
    assert sent == [{"n": 1}, {"n": 4}]
    relay.offer({"n": 5}, change=Change.ROUTINE)
    relay.offer({"n": 6}, change=Change.ROUTINE)
    await asyncio.sleep(0.08)
    assert sent == [{"n": 1}, {"n": 4}, {"n": 6}]
    relay.offer({"n": 7}, change=Change.ROUTINE)
    relay.close()
    await asyncio.sleep(0.08)
    assert sent[-1] == {"n": 6}


async def test_relay_survives_a_failing_sender():
    def broken(payload):
        raise RuntimeError("network down")

    ProgressRelay(broken, updates_per_s=1).offer({}, change=Change.MILESTONE)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_eta_counts_the_running_sampler_later_samplers_and_other_nodes():
    workflow = Workflow(
        {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
            "2": {"class_type": "KSampler", "inputs": {"steps": 10}},
            "3": {"class_type": "KSampler", "inputs": {"steps": 4}},
            "4": {"class_type": "VAEDecode", "inputs": {}},
        }
    )
    clock = FakeClock()
    t = ProgressTracker(workflow, False, 1000, started_at=0.0, clock=clock)
    t.apply(event("execution_start"))
    t.apply(event("executing", node="1"))
    clock.now = 2.0  # the loader took 2 s
    t.apply(event("executing", node="2"))
    t.apply(event("progress", node="2", value=1, max=10))
    assert "eta_s" not in t.payload(), "no step rate yet"
    clock.now = 3.0
    t.apply(event("progress", node="2", value=3, max=10))  # 0.5 s a step
    # 7 steps left here, 4 in the next sampler, and VAEDecode at the 2 s a plain node took
    assert t.payload()["eta_s"] == (7 + 4) * 0.5 + 2.0
    clock.now = 6.5
    t.apply(event("progress", node="2", value=10, max=10))
    assert t.payload()["eta_s"] == 4 * 0.5 + 2.0
    t.finish()
    assert "eta_s" not in t.payload()
