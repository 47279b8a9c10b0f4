"""Per-job stage timings, returned with the job's output as `timings`.

Contract: `with timings.stage("execute_s"):` adds that block's wall time (seconds,
rounded to ms) under the name; `as_dict()` adds `total_s` since creation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimings:
    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self._stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self._stages[name] = self._stages.get(name, 0.0) + time.monotonic() - start

    def as_dict(self) -> dict[str, float]:
        total = time.monotonic() - self.started_at
        return {**{name: round(value, 3) for name, value in self._stages.items()}, "total_s": round(total, 3)}
