"""The durable side of the master: what the registry gave back after a restart, and the
operator's weights and quotas (every change of which is also a ``Persist`` effect).

- :class:`Recovery` — a component of :class:`tepui.master.core.MasterCore` that owns the agents
  the registry knew and that have not re-registered since this master started, and how many
  the registry held (the ``recovery_agent_removal_limit`` is a share of them).
- :func:`recover_registry` — the recovery itself, before ``start``.
- :class:`OperatorCalls` — ``PUT /weights`` and ``POST``/``DELETE /quota``.

What happens when the agents' re-registration window closes is in
:mod:`tepui.master.failures.failure_detection`; an agent coming back, in
:mod:`tepui.master.members.agent_membership`.
"""

from __future__ import annotations

from tepui.master.admission.validation import roles_problem
from tepui.master.config import MasterConfig
from tepui.master.events import (
    FailoverExpired, Log, MasterEffect, OperatorError, ReregisterWindow, ScheduleTimer, UpdateQuota, UpdateWeights,
)
from tepui.master.failures.partitions import PartitionTracker
from tepui.master.offering.pool import Pool
from tepui.master.records import FrameworkRecord
from tepui.master.durability.registry import Recovered, quota_entry, weight_entry
from tepui.master.members.roster import Roster
from tepui.offers.roles import Quota
from tepui.sdk.protocol.values import AgentInfo
from tepui.sdk.resources import EMPTY

RESUBSCRIBE_HEARTBEATS = 5  # the SDK driver's MISSED_HEARTBEATS


class Recovery:
    def __init__(self) -> None:
        self.recovered_agents: dict[str, AgentInfo] = {}  # known to the registry, not back yet
        self.recovered_count = 0  # agents the registry knew at the last failover

    def expect(self, agents: dict[str, AgentInfo]) -> None:
        """After a failover: every agent the registry knew is expected to re-register."""
        self.recovered_agents = dict(agents)
        self.recovered_count = len(agents)

    def expecting(self, agent_id: str | None) -> bool:
        """Whether ``agent_id`` (None: any agent) may still re-register after the failover: a
        task the master does not know may be on it, so "unknown" would be a guess."""
        return (agent_id in self.recovered_agents) if agent_id else bool(self.recovered_agents)

    def take(self, agent_id: str) -> AgentInfo | None:
        """The registry's copy of an agent that is back (or known gone, or removed)."""
        return self.recovered_agents.pop(agent_id, None)

    def missing(self) -> list[str]:
        return sorted(self.recovered_agents)


def resubscribe_grace(config: MasterConfig) -> float:
    """How long a framework recovered from the registry has at least to re-subscribe: a
    master restart is not the framework's disconnect, and an SDK driver may need five
    missed heartbeats to notice a silent master (it re-subscribes at once when its
    connection comes back). Without it a framework with ``failover_timeout`` 0 (Mesos's
    default, ``tepui run``'s) was removed — its tasks killed — the moment a master restarted."""
    return RESUBSCRIBE_HEARTBEATS * config.heartbeat_interval


def recover_registry(recovered: Recovered, now: float, config: MasterConfig, roster: Roster, pool: Pool,
                     partitions: PartitionTracker, recovery: Recovery) -> list[MasterEffect]:
    """Before ``start``: what the registry kept. Weights and quotas apply at once;
    frameworks wait, inactive, for their failover timeout; agents have
    ``agent_reregister_timeout`` to come back (with the resources the registry kept,
    dynamic reservations and volumes included) before they are marked unreachable;
    unreachable and gone agents stay so (see :mod:`tepui.master.failures.partitions`)."""
    out: list[MasterEffect] = []
    allocator = pool.allocator
    for role, weight in recovered.weights.items():
        allocator.set_weight(role, weight)
    for role, quota in recovered.quotas.items():
        allocator.set_quota(role, quota)
    for framework_id, info in recovered.frameworks.items():
        record = FrameworkRecord(framework_id, info, None, now, active=False, disconnected_at=now)
        roster.add_framework(record)
        allocator.add_framework(framework_id, info.roles)
        allocator.deactivate_framework(framework_id)
        out.append(ScheduleTimer(now + max(info.failover_timeout, resubscribe_grace(config)),
                                 FailoverExpired(framework_id)))
    recovery.expect(recovered.agents)
    partitions.recover(recovered, now, out)
    if recovery.recovered_agents:
        out.append(ScheduleTimer(now + config.agent_reregister_timeout, ReregisterWindow()))
    out.append(Log("info", "registry_recovered", {
        "agents": len(recovered.agents), "unreachable_agents": len(recovered.unreachable),
        "gone_agents": len(recovered.gone), "frameworks": len(recovered.frameworks),
        "weights": len(recovered.weights), "quotas": len(recovered.quotas)}))
    return out


class OperatorCalls:
    """The operator's weights and quotas: validated, applied to the allocator, persisted."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def on_update_weights(self, event: UpdateWeights, now: float, out: list[MasterEffect]) -> None:
        for role, weight in event.weights.items():
            problem = roles_problem([role])
            if problem or not weight > 0:
                out.append(OperatorError(f"weights.{role}", problem or f"weight must be > 0, got {weight}"))
                return
        for role, weight in event.weights.items():
            self._pool.allocator.set_weight(role, weight)
            out.append(weight_entry(role, weight))
        out.append(Log("info", "weights_updated", {"weights": event.weights}))
        self._pool.request_allocation()

    def on_update_quota(self, event: UpdateQuota, now: float, out: list[MasterEffect]) -> None:
        problem = roles_problem([event.role])
        if problem:
            out.append(OperatorError("role", problem))
            return
        quota = None
        if event.guarantee is not None or event.limit is not None:
            quota = Quota(guarantee=dict((event.guarantee or EMPTY).fixed_totals()),
                          limit=dict((event.limit or EMPTY).fixed_totals()))
        try:
            self._pool.allocator.set_quota(event.role, quota)
        except ValueError as exc:
            out.append(OperatorError("guarantee", str(exc)))
            return
        out.append(quota_entry(event.role, self._pool.allocator.quotas.get(event.role)))
        out.append(Log("info", "quota_updated", {"role": event.role, "guarantee": event.guarantee,
                                                 "limit": event.limit}))
        self._pool.request_allocation()
