import random
import threading
import time

from comfy_worker.progress.runpod_progress import OrderedProgress


def test_updates_arrive_in_order_and_the_newest_wins():
    received: list[int] = []
    rng = random.Random(7)

    def slow_send(job, payload):
        time.sleep(rng.uniform(0, 0.003))  # a network that varies
        received.append(payload["n"])

    progress = OrderedProgress(slow_send)
    for n in range(1, 201):
        progress({"id": "j"}, {"n": n})
        if n % 20 == 0:
            time.sleep(0.002)

    assert progress.wait_until_idle(5)
    assert received == sorted(received), "never an older after a newer"
    assert len(set(received)) == len(received), "never an older after a newer"
    assert received[-1] == 200, "the last update made is the last one sent"
    assert len(received) < 200, "a slow network skips intermediate updates instead of queueing them"


def test_calls_never_block_on_a_slow_network():
    release = threading.Event()
    progress = OrderedProgress(lambda job, payload: release.wait(30))
    for n in range(100):
        progress({"id": "j"}, {"n": n})
    assert not progress.wait_until_idle(0.05), "every call returned while the first send is still stuck"
    release.set()
    assert progress.wait_until_idle(5)


def test_a_failing_send_does_not_stop_the_sender():
    received = []

    def flaky(job, payload):
        if payload["n"] == 1:
            raise ConnectionError("down")
        received.append(payload["n"])

    progress = OrderedProgress(flaky)
    progress({"id": "j"}, {"n": 1})
    assert progress.wait_until_idle(5)
    progress({"id": "j"}, {"n": 2})
    assert progress.wait_until_idle(5)
    assert received == [2]


def test_one_jobs_updates_never_replace_another_jobs():
    received: list[tuple[str, int]] = []
    sending, release = threading.Event(), threading.Event()

    def send(job, payload):
        sending.set()
        release.wait(5)
        received.append((job["id"], payload["n"]))

    progress = OrderedProgress(send)
    progress({"id": "a"}, {"n": 0})
    assert sending.wait(5)  # the sender is stuck on this one
    for n in range(1, 50):
        progress({"id": "a"}, {"n": n})
        progress({"id": "b"}, {"n": n})
    progress({"id": "a"}, {"n": 50})
    release.set()

    assert progress.wait_until_idle(5)
    # Each job's newest, a's first as it queued first; b's first update is kept too (a job's
    # first update is promised: it is how a client learns the job started).
    assert received == [("a", 0), ("a", 50), ("b", 1), ("b", 49)]


def test_14b_a_slow_sender_skips_intermediate_updates_never_promised_ones():
    """The job API promises every node change and each sampler's first and last step. With a
    sender stuck behind a slow network, a txt2img's whole run is offered meanwhile: the
    promised updates all arrive, in order; only the steps between are thinned."""
    received: list[dict] = []
    release = threading.Event()

    def slow(job, payload):
        release.wait(5)
        received.append(payload)

    progress = OrderedProgress(slow)
    offered = [{"status": "queued", "node_id": None, "step": None, "max": None}]
    offered += [{"status": "running", "node_id": node, "step": None, "max": None} for node in ("4", "6", "7", "5")]
    offered += [{"status": "running", "node_id": "3", "step": step, "max": 20} for step in range(1, 21)]
    offered += [{"status": "running", "node_id": node, "step": None, "max": None} for node in ("8", "9")]
    offered += [{"status": "collecting_outputs", "node_id": None, "step": None, "max": None}]
    for payload in offered:
        progress({"id": "j"}, payload)
    release.set()
    assert progress.wait_until_idle(5)

    seen = [(p["status"], p["node_id"], p["step"]) for p in received]
    for must in [("queued", None, None), ("running", "4", None), ("running", "5", None), ("running", "3", 1),
                 ("running", "3", 20), ("running", "8", None), ("running", "9", None),
                 ("collecting_outputs", None, None)]:  # fmt: skip
        assert must in seen, (must, seen)
    assert seen == [s for s in [(p["status"], p["node_id"], p["step"]) for p in offered] if s in seen], "in order"
    assert len(received) < len(offered), "intermediate steps are thinned"
