"""Inputs and outputs of the master's pure core.

Peers are the transport's addresses for agents and frameworks (ZeroMQ routing ids); who a peer
*is* comes with each message from the authenticated CURVE key (``Received.identity``,
``Received.credential``), never from the routing id; the core never learns how bytes travel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired

__all__ = [
    "Credential", "Received", "PeerUnreachable", "TimerFired", "UpdateWeights", "UpdateQuota", "OperatorError",
    "Send", "ScheduleTimer", "CancelTimer", "Log", "Abort",
]


@dataclass(frozen=True)
class Credential:
    """What the allow list says about the CURVE key a message was authenticated with."""

    name: str
    kind: str  # agent | framework | client
    principal: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Received:
    """A decoded message from a peer. ``identity`` is the name of the CURVE key that
    authenticated the connection (the message's ZeroMQ ``User-Id``) and ``credential`` what the
    allow list says about it; both None in ``--insecure`` mode, where nothing is checked.
    ``call_id`` is the envelope's, echoed in every ERROR the message causes."""

    peer: bytes
    body: Any
    epoch: int = 0
    incarnation: str | None = None
    identity: str | None = None
    credential: Credential | None = None
    call_id: str | None = None


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
