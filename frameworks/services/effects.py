"""What the services core asks its shell to do. Frozen values; the shell executes them in order.

A batch that changed state starts with one :class:`Persist`, and the shell commits it before it
executes anything else in the batch — so an instance is in the store before its launch is sent,
and a deployment's new status is stored before anyone hears of it (write-ahead, as the agent's
checkpoint effects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from tepui.sdk import Resources, TaskInfo


@dataclass(frozen=True)
class Persist:
    puts: tuple[tuple[str, str, msgspec.Struct | str], ...]
    deletes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Launch:
    offer_id: str
    tasks: tuple[TaskInfo, ...]


@dataclass(frozen=True)
class Decline:
    offer_ids: tuple[str, ...]
    refuse_seconds: float


@dataclass(frozen=True)
class Kill:
    task_id: str
    agent_id: str | None
    grace_seconds: float | None


@dataclass(frozen=True)
class Reconcile:
    tasks: tuple[tuple[str, str | None], ...]  # empty: implicit (every task the master knows)


@dataclass(frozen=True)
class Demand:
    """Declare what is waiting (empty: nothing — the allocator sends no offers), and revive or
    suppress to match (Mesos semantics: revive also clears earlier decline filters)."""

    shapes: tuple[tuple[Resources, int], ...]
    revive: bool


@dataclass(frozen=True)
class Publish:
    """One event for the event stream (``GET /v1/events``)."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Probe:
    """Start readiness probes of a task: GET ``url`` every ``interval`` seconds until a status in
    ``statuses`` comes back; each result is reported with ``ServicesCore.readiness``."""

    task_id: str
    url: str
    interval: float
    timeout: float
    statuses: tuple[int, ...]


@dataclass(frozen=True)
class StopProbe:
    task_id: str


Effect = Persist | Launch | Decline | Kill | Reconcile | Demand | Publish | Probe | StopProbe
