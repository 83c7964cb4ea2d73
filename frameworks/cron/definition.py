"""A schedule as the cron core sees it: when it fires (a :class:`Timeline`) and what it does
then (a :class:`Policy` and the job template), with the spec as data for the store.

Why a protocol between the core and the fire computation: the core decides about fires
(write-ahead, catch-up, concurrency), the timeline only computes them (cron expressions, ISO
intervals, zones, DST: :mod:`.fires`), so each is tested on its own and the core's tests run on
a fake clock with exact instants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tepui.frameworks.cron.fires import jitter_of
from tepui.frameworks.cron.spec import ScheduleSpec, load_schedule, schedule_of

__all__ = ["Due", "FireLike", "Policy", "ScheduleDef", "Timeline", "build", "definition_of", "no_jitter"]

CONCURRENCY = ("Allow", "Forbid", "Replace")
CATCH_UP = ("none", "latest", "all")


@dataclass(frozen=True)
class Due:
    """One fire: its key (the batch job id) and its scheduled instant (Unix seconds, UTC)."""

    key: str
    at: float


class FireLike(Protocol):
    """What the core reads of a fire (:class:`~.fires.Fire`, :class:`Due`)."""

    @property
    def key(self) -> str: ...

    @property
    def at(self) -> float: ...


class Timeline(Protocol):
    """The fires of one schedule (:class:`~.fires.Schedule`). Instants are Unix seconds;
    ``after < at <= until``."""

    def next_after(self, t: float) -> FireLike | None: ...

    def fires_between(self, after: float, until: float, limit: int) -> Sequence[FireLike]: ...

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


def definition_of(spec: ScheduleSpec) -> ScheduleDef:
    """The core's view of a validated spec (:func:`~.spec.load_schedule`)."""
    schedule = schedule_of(spec)
    jitter = schedule.jitter
    policy = Policy(spec.concurrency_policy, spec.starting_deadline_seconds, spec.catch_up, spec.catch_up_limit,
                    spec.history.successful, spec.history.failed)
    return ScheduleDef(spec.id, schedule, spec.job, policy, spec.to_data(), spec.suspend,
                       (lambda key: jitter_of(key, jitter)) if jitter > 0 else no_jitter)


def build(data: dict[str, Any]) -> ScheduleDef:
    """A stored spec back to a definition (:func:`~.loading.load_schedules`); a spec the
    current rules refuse raises :class:`~tepui.sdk.spec_documents.SpecError` (a ValueError)."""
    return definition_of(load_schedule(data))
