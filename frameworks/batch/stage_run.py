"""One stage's per-index state inside a :class:`~tepui.frameworks.batch.job_run.JobRun`, kept compact.

Why bytearrays: a 100,000-task array is legal (``LIMITS["tasks"]``) and most of its indices sit
pending for most of the job. One object per index would cost ~100 bytes each before anything
runs; here a pending index costs its status byte, its spent-attempts byte and (for a stage with
``n_to_n`` upstreams) one counter byte. Dicts hold only indices that have started (their try
number, their retry time). Fresh indices are served by a cursor over the array (a stage whose
upstreams are whole-stage conditions) or by a deque filled as ``n_to_n`` upstream indices succeed.
"""

from __future__ import annotations

import heapq
from collections import deque

from tepui.frameworks.batch.spec import StageSpec

# index status codes (one byte each)
PENDING, QUEUED, LIVE, SUCCEEDED, FAILED, BACKOFF, SKIPPED, GANG_DONE = range(8)

#: stage states
WAITING, ACTIVE, DONE_OK, DONE_FAILED, UPSTREAM_FAILED = "WAITING", "ACTIVE", "SUCCEEDED", "FAILED", "UPSTREAM_FAILED"
STAGE_ENDED = frozenset({DONE_OK, DONE_FAILED, UPSTREAM_FAILED})


class StageRun:
    """Mutable; owned by one JobRun. Counters are kept in step with ``status``."""

    __slots__ = (
        "spec", "name", "array", "status", "spent", "tries", "retry_due", "retry_heap", "cursor",
        "nn_need", "nn_count", "nn_ready", "state", "reason", "counts", "gang_due", "gang_failure",
    )

    def __init__(self, spec: StageSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.array = spec.array
        self.status = bytearray(spec.array)
        self.spent = bytearray(spec.array)
        self.tries: dict[int, int] = {}
        self.retry_due: dict[int, float] = {}
        self.retry_heap: list[tuple[float, int]] = []
        self.cursor = 0
        self.nn_need = sum(1 for d in spec.depends_on if d.condition == "n_to_n")
        self.nn_count = bytearray(spec.array) if self.nn_need else None
        self.nn_ready: deque[int] = deque()
        self.state = WAITING
        self.reason = ""
        self.counts = [0] * 8
        self.counts[PENDING] = spec.array
        self.gang_due: float | None = None  # a gang's retry time (all its indices wait for it)
        self.gang_failure: tuple[int | None, str | None] | None = None  # (exit code, reason) of its first failure

    def set(self, index: int, code: int) -> None:
        self.counts[self.status[index]] -= 1
        self.counts[code] += 1
        self.status[index] = code

    @property
    def busy(self) -> int:
        """Queued + live: what ``parallelism`` bounds."""
        return self.counts[QUEUED] + self.counts[LIVE] + self.counts[GANG_DONE]

    def ended_indices(self) -> int:
        return self.counts[SUCCEEDED] + self.counts[FAILED] + self.counts[SKIPPED]

    def backoff(self, index: int, at: float) -> None:
        self.set(index, BACKOFF)
        self.retry_due[index] = at
        heapq.heappush(self.retry_heap, (at, index))

    def due_retries(self, now: float, limit: int) -> tuple[list[int], float | None]:
        """Indices whose backoff has ended (earliest first, at most ``limit``) and the next due
        time of the others. Stale heap entries (the index was queued since) are dropped."""
        heap = self.retry_heap
        while heap and (self.status[heap[0][1]] != BACKOFF or self.retry_due.get(heap[0][1]) != heap[0][0]):
            heapq.heappop(heap)
        due: list[int] = []
        seen: set[int] = set()  # an index that backed off twice at the same time is in the heap twice
        for at, index in sorted(heap):
            if self.status[index] != BACKOFF or self.retry_due.get(index) != at or index in seen:
                continue
            seen.add(index)
            if at > now:
                return due, at
            if len(due) < limit:
                due.append(index)
        return due, None

    def fresh(self, limit: int) -> list[int]:
        """Up to ``limit`` never-started pending indices whose upstreams allow them."""
        out: list[int] = []
        if self.nn_need:
            while self.nn_ready and self.status[self.nn_ready[0]] != PENDING:
                self.nn_ready.popleft()
            seen: set[int] = set()  # a reopened index may be in the deque twice
            for index in self.nn_ready:
                if len(out) >= limit:
                    break
                if self.status[index] == PENDING and index not in seen:
                    seen.add(index)
                    out.append(index)
            return out
        status = self.status
        while self.cursor < self.array and status[self.cursor] != PENDING:
            self.cursor += 1
        i = self.cursor
        while i < self.array and len(out) < limit:
            if status[i] == PENDING:
                out.append(i)
            i += 1
        return out

    def reopen(self, index: int) -> None:
        """An index back to PENDING (suspension, ``retry``): found again by the cursor or deque."""
        self.set(index, PENDING)
        self.retry_due.pop(index, None)
        if self.nn_count is not None:
            if self.nn_count[index] >= self.nn_need:
                self.nn_ready.append(index)
        elif index < self.cursor:
            self.cursor = index
