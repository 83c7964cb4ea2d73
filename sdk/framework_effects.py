"""What a framework's pure core asks of the SDK driver, shared by the frameworks Tepui ships
(services, batch): launch on an offer, decline, kill, reconcile, declare demand, and publish an
event on the framework's stream. Each framework adds its own (its ``Persist``, probes) in its
``effects`` module and its shell executes them in order; a framework written outside Tepui can
use these too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tepui.sdk.protocol.values import TaskInfo
from tepui.sdk.resources import Resources


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
    grace_seconds: float | None = None


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
    """One event for the framework's event stream (``GET /v1/events``)."""

    kind: str
    data: dict[str, Any]


class CommandError(Exception):
    """A refused API command: the HTTP status, a REASON code, a message saying what to do
    instead, and the request field at fault (the body ``{"error", "reason", "field"}``)."""

    def __init__(self, status: int, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.field = status, reason, message, field

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "reason": self.reason}
        if self.field is not None:
            body["field"] = self.field
        return body
