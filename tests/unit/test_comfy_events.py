"""EventRouter: one reader of ComfyUI's event stream, each prompt in flight its own events."""

import asyncio

import pytest

from comfy_worker.comfyui.comfy_api import ComfyEvent, EventStreamClosed
from comfy_worker.comfyui.comfy_events import EventRouter, StreamEnded


class ScriptedStream:
    """A ComfyAPI whose event stream is fed by the test; prompts get ids p1, p2, ..."""

    def __init__(self):
        self.feed: asyncio.Queue[ComfyEvent | None] = asyncio.Queue()
        self.queued = 0
        self.reconnects = 0
        self.early: list[ComfyEvent] = []  # sent before POST /prompt answers

    async def connect_events(self):
        pass

    async def reconnect_events(self):
        self.reconnects += 1
        self.feed = asyncio.Queue()

    async def queue_prompt(self, prompt, extra_data):
        self.queued += 1
        for event in self.early:
            self.feed.put_nowait(event)
        self.early = []
        await asyncio.sleep(0.01)  # the events reach the reader before the answer
        return f"p{self.queued}"

    async def events(self):
        while (event := await self.feed.get()) is not None:
            yield event
        raise EventStreamClosed("closed by the test")


def event(type_: str, prompt_id: str, **data) -> ComfyEvent:
    return ComfyEvent(type_, {"prompt_id": prompt_id, **data})


async def next_of(events, skip=("queue_position",)) -> ComfyEvent:
    while (got := await asyncio.wait_for(events.next(), 1)).type in skip:
        pass
    return got


async def test_events_sent_before_the_prompt_id_is_known_are_not_lost():
    comfy = ScriptedStream()
    router = EventRouter(comfy)
    comfy.early = [event("execution_start", "p1"), event("executing", "p1", node="3")]

    events = await router.submit({}, {})

    assert events.prompt_id == "p1"
    assert [(await next_of(events)).type for _ in range(2)] == ["execution_start", "executing"]
    await router.close()


async def test_each_prompt_gets_its_own_events_and_previews_go_to_the_running_one():
    comfy = ScriptedStream()
    router = EventRouter(comfy)
    first, second = await router.submit({}, {}), await router.submit({}, {})

    comfy.feed.put_nowait(event("execution_start", "p1"))
    comfy.feed.put_nowait(ComfyEvent("preview_frame", {}, binary=b"frame"))
    comfy.feed.put_nowait(event("executing", "p1", node=None))
    comfy.feed.put_nowait(event("execution_start", "p2"))

    assert (await next_of(first)).type == "execution_start"
    assert (await next_of(first)).binary == b"frame"
    assert (await next_of(first)).type == "executing"
    assert (await next_of(second)).type == "execution_start"
    await router.close()


async def test_a_queued_prompt_is_told_how_many_are_ahead_and_when_it_should_start():
    now = [100.0]
    comfy = ScriptedStream()
    router = EventRouter(comfy, clock=lambda: now[0])
    earlier = await router.submit({}, {})
    comfy.feed.put_nowait(event("execution_start", "p1"))
    await next_of(earlier)
    now[0] += 4.0
    comfy.feed.put_nowait(event("executing", "p1", node=None))  # a 4 s run: the typical run is 4 s
    await next_of(earlier)

    running, waiting = await router.submit({}, {}), await router.submit({}, {})
    at_submit = await asyncio.wait_for(waiting.next(), 1)
    assert at_submit.data == {"prompt_id": "p3", "ahead": 1, "starts_in_s": 4.0, "run_s": 4.0}
    now[0] += 1.0
    comfy.feed.put_nowait(event("execution_start", "p2"))
    await next_of(running)
    at_start = await asyncio.wait_for(waiting.next(), 1)
    assert at_start.data == {"prompt_id": "p3", "ahead": 1, "starts_in_s": 4.0, "run_s": 4.0}
    now[0] += 1.0  # p2 has run 1 s of its typical 4 s; p3 waits behind it
    last = await router.submit({}, {})
    told = await asyncio.wait_for(last.next(), 1)
    assert told.data == {"prompt_id": "p4", "ahead": 2, "starts_in_s": 7.0, "run_s": 4.0}

    comfy.feed.put_nowait(event("executing", "p2", node=None))
    position = await asyncio.wait_for(waiting.next(), 1)
    assert position.type == "queue_position"
    assert position.data["ahead"] == 0
    await router.close()


async def test_a_closed_stream_ends_every_prompt_and_is_reopened_once():
    comfy = ScriptedStream()
    router = EventRouter(comfy)
    first, second = await router.submit({}, {}), await router.submit({}, {})
    comfy.feed.put_nowait(None)

    endings = []
    for events in (first, second):
        with pytest.raises(StreamEnded) as ended:
            await next_of(events)
        endings.append(ended.value.generation)
    await asyncio.gather(*(router.reconnect(generation) for generation in endings))

    assert comfy.reconnects == 1, "the second follower found the stream reopened"
    comfy.feed.put_nowait(event("executing", "p2", node="5"))
    assert (await next_of(second)).data["node"] == "5"
    await router.close()
