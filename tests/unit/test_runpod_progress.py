import random
import threading
import time

from comfy_worker.runpod_progress import OrderedProgress


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
    assert received == sorted(received) and len(set(received)) == len(received), "never an older after a newer"
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
    assert received == [("a", 0), ("a", 50), ("b", 49)], "each job's newest, a's first as it queued first"
