"""A schedule as the cron core sees it: when it fires (a :class:`Timeline`) and what it does
then (a :class:`Policy` and the job template), with the spec as data for the store.

Why a protocol between the core and the fire computation: the core decides about fires
(write-ahead, catch-up, concurrency), the timeline only computes them (cron expressions, ISO
intervals, zones, DST: :mod:`.fires`), so each is tested on its own and the core's tests run on
a fake clock with exact instants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Due", "Policy", "ScheduleDef", "Timeline", "no_jitter"]

CONCURRENCY = ("Allow", "Forbid", "Replace")
CATCH_UP = ("none", "latest", "all")


@dataclass(frozen=True)
class Due:
    """One fire: its key (the batch job id) and its scheduled instant (Unix seconds, UTC)."""

    key: str
    at: float


class Timeline(Protocol):
    """The fires of one schedule. Instants are Unix seconds; ``after < at <= until``."""

    def next_after(self, t: float) -> Due | None: ...

    def fires_between(self, after: float, until: float, limit: int) -> list[Due]: ...

    def count_between(self, after: float, until: float) -> int: ...


@dataclass(frozen=True)
class Policy:
    """``starting_deadline``: seconds, None = no deadline. History limits as Kubernetes'
    ``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit`` (3 and 1)."""

    concurrency: str = "Allow"
    starting_deadline: float | None = None
    catch_up: str = "latest"
    catch_up_limit: int = 100
    successful_history: int = 3
    failed_history: int = 1


def no_jitter(key: str) -> float:
    return 0.0


@dataclass(frozen=True)
class ScheduleDef:
    """``jitter(key)``: seconds the submit of that fire waits (deterministic per key, so a
    restart does not move it). ``data``: the spec as stored and shown. ``suspend``: the spec's
    ``suspend`` field."""

    id: str
    timeline: Timeline
    job: dict[str, Any]
    policy: Policy = Policy()
    data: dict[str, Any] | None = None
    suspend: bool = False
    jitter: Callable[[str], float] = no_jitter
