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

from tepui.sdk.framework_effects import Decline, Demand, Kill, Launch, Publish, Reconcile

__all__ = ["Decline", "Demand", "Effect", "Kill", "Launch", "Persist", "Probe", "Publish", "Reconcile", "StopProbe"]


@dataclass(frozen=True)
class Persist:
    puts: tuple[tuple[str, str, msgspec.Struct | str], ...]
    deletes: tuple[tuple[str, str], ...]


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
