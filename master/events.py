"""The master core's vocabulary: what it is told (:data:`MasterEvent`), what it asks its shell to
do (:data:`MasterEffect`), and the keys of the timers it sets (:data:`TimerKey`).

Peers are the transport's addresses for agents and frameworks (ZeroMQ routing ids); who a peer
*is* comes with each message from the authenticated CURVE key (``Received.identity``,
``Received.credential``), never from the routing id; the core never learns how bytes travel.

Why timer keys are frozen dataclasses rather than string tuples: the core dispatches a fired
timer on the type of its key (one table in :mod:`tepui.master.core`), a key carries its subject
by name (``FailoverExpired("F1").framework_id``, not ``key[1]``), and a misspelt key is a type
error, not a timer that never matches. Equal keys are equal values, so scheduling one again
replaces the earlier timer (the shells' rule) and cancelling needs no handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from tepui.master.durability.registry import Persist
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol.agent import MasterToAgent
from tepui.sdk.protocol.envelope import MasterInbound
from tepui.sdk.protocol.scheduler import SchedulerEvent
from tepui.sdk.resources import Resources

if TYPE_CHECKING:
    from tepui.master.admission.acls import Acls

__all__ = [
    "Credential", "Received", "PeerUnreachable", "TimerFired", "UpdateWeights", "UpdateQuota", "ReplaceAcls",
    "OperatorError", "Send", "ScheduleTimer", "CancelTimer", "Log", "Abort", "Persist", "MasterEvent",
    "MasterEffect", "Outbound", "TimerKey", "AllocateNow", "AllocateBatch", "PingAgents", "Heartbeat",
    "ReregisterWindow", "RemovalSlot", "AgentGone", "FailoverExpired", "OfferTimeout",
]

# --- timer keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocateNow:
    """An incremental allocation cycle at once: something changed that may make offers."""


@dataclass(frozen=True)
class AllocateBatch:
    """The periodic full allocation cycle (``allocation_interval``)."""


@dataclass(frozen=True)
class PingAgents:
    """The next round of application-level pings (master/failures/failure_detection.py)."""


@dataclass(frozen=True)
class Heartbeat:
    """The next HEARTBEAT to every subscribed framework (``heartbeat_interval``)."""


@dataclass(frozen=True)
class ReregisterWindow:
    """The agents' re-registration window after a failover closes (master/durability/durable.py)."""


@dataclass(frozen=True)
class RemovalSlot:
    """The next agent removal the rate limit allows (``agent_removal_rate``)."""


@dataclass(frozen=True)
class AgentGone:
    """An unreachable agent has been so for ``agent_gone_timeout``: it is gone."""

    agent_id: str


@dataclass(frozen=True)
class FailoverExpired:
    """A disconnected framework's ``failover_timeout`` ran out: it is removed."""

    framework_id: str


@dataclass(frozen=True)
class OfferTimeout:
    """An offer outstanding for ``offer_timeout`` is rescinded."""

    offer_id: str


TimerKey = Union[AllocateNow, AllocateBatch, PingAgents, Heartbeat, ReregisterWindow, RemovalSlot, AgentGone,
                 FailoverExpired, OfferTimeout]

# --- events -------------------------------------------------------------------------------


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
    body: MasterInbound  # (a PartialAccept is an Accept): the table in core.py routes it by type
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
    guarantee: Resources | None = None
    limit: Resources | None = None


@dataclass(frozen=True)
class ReplaceAcls:
    """The shell read the ACL file again (SIGHUP): decisions from now on use ``acls``."""

    acls: Acls


@dataclass(frozen=True)
class OperatorError:
    """What the core answers an operator call it refuses (the HTTP shell turns it into 422)."""

    field: str
    message: str


Outbound = Union[MasterToAgent, SchedulerEvent]  # every message the master sends


@dataclass(frozen=True)
class Send:
    peer: bytes
    body: Outbound


@dataclass(frozen=True)
class Abort:
    """The master must stop (Mesos ``EXIT(EXIT_FAILURE)``): the shell logs ``reason`` — which
    says what happened and what the operator should do — and exits with status 1, performing
    nothing else from the same batch. A supervisor (or the operator) restarts it."""

    reason: str


MasterEvent = Union[Received, TimerFired, PeerUnreachable, UpdateWeights, UpdateQuota, ReplaceAcls]
MasterEffect = Union[Send, ScheduleTimer, CancelTimer, Log, Persist, Abort, OperatorError]
