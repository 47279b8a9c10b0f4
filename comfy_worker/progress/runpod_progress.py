"""Progress updates to RunPod, in order: one sender thread, and per job the newest update wins.

Contract: `OrderedProgress(send)` is a `ProgressSink`. Calling it never blocks the
event loop: it leaves the payload for a single sender thread, and that thread calls
the blocking `send` one update at a time, jobs taking turns. A job's payload not yet
sent is replaced by its next one, unless it is promised (`promised`: a change of node
or status, a sampler's first or last step, as docs/job-api.md promises): those wait
their turn (at most PROMISED_KEPT per job). So each job's updates reach RunPod in the
order they were made (never an older one after a newer), and a slow network costs
skipped intermediate updates, never a promised one and never a backlog. `post_to_runpod` is
the `send` for production: the SDK's own job-done request (`send_result`, the one
`runpod.serverless.progress_update` makes) over one kept-open session. The SDK's
`progress_update` itself starts a thread and a session per update, so two updates
can overtake each other: a client polling /status saw the overall fraction go 0.29
then 0.14.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.contract import JobState

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any], dict[str, Any]], None]


PROMISED_KEPT = 32  # a job's promised updates waiting at most; past that the oldest goes
OFFERED_KEPT = 256  # jobs whose last update is remembered, to tell the next one's promise


def promised(payload: dict[str, Any], before: dict[str, Any] | None) -> bool:
    """Whether an update is one the job API promises to deliver: the first, a change of
    status or node, or a sampler's first or last step."""
    if before is None or payload.get("status") != before.get("status"):
        return True
    if payload.get("node_id") != before.get("node_id"):
        return True
    step = payload.get("step")
    return step is not None and (step == 1 or step == payload.get("max"))


@dataclass
class _Waiting:
    job: dict[str, Any]
    payload: dict[str, Any]
    promised: bool


class OrderedProgress:
    def __init__(self, send: Send):
        self._send = send
        self._changed = threading.Condition()
        self._pending: dict[Any, collections.deque[_Waiting]] = {}  # job id -> its updates waiting, oldest first
        self._offered: collections.OrderedDict[Any, dict[str, Any]] = collections.OrderedDict()  # job id -> last
        self._sending = False
        self._thread: threading.Thread | None = None

    def __call__(self, job: dict[str, Any], payload: dict[str, Any]) -> None:
        job_id = job.get("id")
        with self._changed:
            waiting = _Waiting(job, payload, promised(payload, self._offered.get(job_id)))
            self._offered[job_id] = payload
            self._offered.move_to_end(job_id)
            while len(self._offered) > OFFERED_KEPT:
                self._offered.popitem(last=False)
            queue = self._pending.setdefault(job_id, collections.deque())  # a job waiting already keeps its turn
            if queue and not queue[-1].promised:
                queue[-1] = waiting  # a newer update says more than an intermediate one
            else:
                queue.append(waiting)
                if len(queue) > PROMISED_KEPT:
                    queue.popleft()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progress-sender", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def wait_until_idle(self, timeout_s: float) -> bool:
        """True once everything offered has been sent (for tests and shutdown)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._sending, timeout_s)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending))
                job_id = next(iter(self._pending))
                queue = self._pending.pop(job_id)
                waiting = queue.popleft()
                if queue:
                    self._pending[job_id] = queue  # its next update waits behind the other jobs'
                job, payload = waiting.job, waiting.payload
                self._sending = True
            try:
                self._send(job, payload)
            except Exception:  # progress is best effort: never stop the sender over one update
                log.exception("progress update for job %s failed", job.get("id"))
            finally:
                with self._changed:
                    self._sending = False
                    self._changed.notify_all()


def post_to_runpod() -> Send:
    """A blocking `send` that posts IN_PROGRESS updates as the SDK does, over one session.
    Call it from one thread only (OrderedProgress's)."""
    # SDK internals (runpod_sdk.py): the request progress_update makes.
    from ..core.runpod_sdk import AsyncClientSession, send_result

    loop = asyncio.new_event_loop()
    session: Any = None

    async def post(job: dict[str, Any], payload: dict[str, Any]) -> None:
        nonlocal session
        if session is None:
            session = AsyncClientSession()
        await send_result(session, {"status": JobState.IN_PROGRESS, "output": payload}, job)

    def send(job: dict[str, Any], payload: dict[str, Any]) -> None:
        loop.run_until_complete(post(job, payload))

    return send
