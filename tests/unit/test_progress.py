import asyncio
import base64
import struct

from comfy_worker.comfyui.comfy_api import ComfyEvent
from comfy_worker.progress.progress import Change, ProgressRelay, ProgressTracker
from comfy_worker.request.workflow import Workflow

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
    """No time passes: the fraction is counted in units (each node, each sampler step)."""
    return ProgressTracker(WORKFLOW, preview, max_bytes, started_at=0.0, clock=FakeClock())


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


async def test_relay_survives_a_failing_sender(caplog):
    sent = []

    def flaky(payload):
        if payload["n"] == 1:
            raise RuntimeError("network down")
        sent.append(payload)

    relay = ProgressRelay(flaky, updates_per_s=1000)
    relay.offer({"n": 1}, change=Change.MILESTONE)  # fails: logged, not raised
    relay.offer({"n": 2}, change=Change.MILESTONE)
    assert sent == [{"n": 2}], "the relay goes on after a failed send"
    assert "progress update failed" in caplog.text
    assert "network down" in caplog.text


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


def test_issue20_9_the_fraction_follows_time_not_node_count():
    """A txt2img run: loader 0.5 s, the small nodes 0.01-0.02 s, 20 steps of 0.2 s, decode and save 0.1 s."""
    workflow = Workflow(
        {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {}},
            "3": {"class_type": "KSampler", "inputs": {"steps": 20}},
            "8": {"class_type": "VAEDecode", "inputs": {}},
            "9": {"class_type": "SaveImage", "inputs": {}},
        }
    )
    clock = FakeClock()
    t = ProgressTracker(workflow, False, 1000, started_at=0.0, clock=clock)
    seen: list[tuple[float, float]] = []  # (share of the run's time, progress)
    total_s = 0.5 + 0.02 + 0.02 + 0.01 + 20 * 0.2 + 0.1 + 0.1

    def at(now: float, e: ComfyEvent) -> None:
        clock.now = now
        t.apply(e)
        seen.append((now / total_s, t.payload()["progress"]))

    at(0.0, event("execution_start"))
    now = 0.0
    for node_id, seconds in (("4", 0.5), ("6", 0.02), ("7", 0.02), ("5", 0.01)):
        at(now, event("executing", node=node_id))
        now += seconds
    at(now, event("executing", node="3"))
    for step in range(1, 21):
        now += 0.2
        at(now, event("progress", node="3", value=step, max=20))
    for node_id in ("8", "9"):
        at(now, event("executing", node=node_id))
        now += 0.1

    progress = [fraction for _, fraction in seen]
    assert progress == sorted(progress), "never backwards"
    sampler_starts = next(fraction for share, fraction in seen if share >= 0.55 / total_s)
    assert sampler_starts <= 0.2, f"{sampler_starts:.2f} when about 12 % of the time has passed"
    for share, fraction in seen[6:]:
        # once a step rate is measured, within 10 points of the share of time
        assert abs(fraction - share) <= 0.1, (share, fraction)


def test_a_queued_prompt_says_how_many_jobs_are_ahead_and_counts_their_time():
    clock = FakeClock()
    t = ProgressTracker(WORKFLOW, False, 1000, started_at=0.0, clock=clock)
    told = {"prompt_id": "p", "ahead": 2, "starts_in_s": 5.0, "run_s": 3.0}

    assert t.apply(ComfyEvent("queue_position", told)) is Change.MILESTONE
    clock.now = 1.5
    payload = t.payload()

    assert payload["status"] == "queued"
    assert payload["jobs_ahead"] == 2
    assert payload["message"] == "waiting in ComfyUI's queue: 2 jobs ahead"
    assert payload["eta_s"] == 6.5, "3.5 s until it starts, then a typical 3 s run"
    assert payload["progress"] == 0.0, "waiting is not progress"

    t.apply(ComfyEvent("execution_start", {"prompt_id": "p"}))
    assert "jobs_ahead" not in t.payload()
    assert t.apply(ComfyEvent("queue_position", told)) is Change.NONE, "a started prompt is no longer queued"
