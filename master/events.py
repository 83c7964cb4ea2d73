"""Inputs and outputs of the master's pure core.

Peers are the transport's addresses for agents and frameworks (ZeroMQ routing ids today, the
authenticated CURVE identity later); the core never learns how bytes travel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired

__all__ = [
    "Received", "PeerUnreachable", "TimerFired", "UpdateWeights", "UpdateQuota", "OperatorError",
    "Send", "ScheduleTimer", "CancelTimer", "Log", "Abort",
]


@dataclass(frozen=True)
class Received:
    """A decoded message from a peer."""

    peer: bytes
    body: Any
    epoch: int = 0
    incarnation: str | None = None


@dataclass(frozen=True)
class PeerUnreachable:
    """The transport could not route to ``peer`` (it disconnected)."""

    peer: bytes


@dataclass(frozen=True)
class UpdateWeights:
    """Operator call (``PUT /weights``): role → weight."""

    weights: dict[str, float]


@dataclass(frozen=True)
class UpdateQuota:
    """Operator call (``POST /quota``, ``DELETE /quota/ROLE``): guarantee and limit as scalar
    resources (``Resources``); both None removes the role's quota."""

    role: str
    guarantee: Any = None
    limit: Any = None


@dataclass(frozen=True)
class OperatorError:
    """What the core answers an operator call it refuses (the HTTP shell turns it into 422)."""

    field: str
    message: str


@dataclass(frozen=True)
class Send:
    peer: bytes
    body: Any


@dataclass(frozen=True)
class Abort:
    """The master must stop (Mesos ``EXIT(EXIT_FAILURE)``): the shell logs ``reason`` — which
    says what happened and what the operator should do — and exits with status 1, performing
    nothing else from the same batch. A supervisor (or the operator) restarts it."""

    reason: str
