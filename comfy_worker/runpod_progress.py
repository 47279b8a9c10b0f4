"""Progress updates to RunPod, in order: one sender thread, and per job the newest update wins.

Contract: `OrderedProgress(send)` is a `ProgressSink`. Calling it never blocks the
event loop: it leaves the payload for a single sender thread, replacing that job's
payload not yet sent (another job's pending update is kept), and that thread calls
the blocking `send` one update at a time, jobs taking turns. So each job's updates
reach RunPod in the order they were made (never an older one after a newer), and a
slow network costs skipped intermediate updates, not a backlog. `post_to_runpod` is
the `send` for production: the SDK's own job-done request (`send_result`, the one
`runpod.serverless.progress_update` makes) over one kept-open session. The SDK's
`progress_update` itself starts a thread and a session per update, so two updates
can overtake each other: a client polling /status saw the overall fraction go 0.29
then 0.14.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any], dict[str, Any]], None]


class OrderedProgress:
    def __init__(self, send: Send):
        self._send = send
        self._changed = threading.Condition()
        self._pending: dict[Any, tuple[dict[str, Any], dict[str, Any]]] = {}  # job id -> (job, payload)
        self._sending = False
        self._thread: threading.Thread | None = None

    def __call__(self, job: dict[str, Any], payload: dict[str, Any]) -> None:
        with self._changed:
            self._pending[job.get("id")] = (job, payload)  # a job waiting already keeps its turn
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
                job, payload = self._pending.pop(next(iter(self._pending)))
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
    from .runpod_sdk import AsyncClientSession, send_result

    loop = asyncio.new_event_loop()
    session: Any = None

    async def post(job: dict[str, Any], payload: dict[str, Any]) -> None:
        nonlocal session
        if session is None:
            session = AsyncClientSession()
        await send_result(session, {"status": "IN_PROGRESS", "output": payload}, job)

    def send(job: dict[str, Any], payload: dict[str, Any]) -> None:
        loop.run_until_complete(post(job, payload))

    return send
