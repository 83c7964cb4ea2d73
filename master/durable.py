"""The durable half of the master's core: what the registry keeps and the operator changes.

Recovery after a restart (what happens when the agents' re-registration window closes is in
:mod:`tepui.master.partitions`), and the operator's weights and quotas — every change here is
also a ``Persist`` effect. A mixin of :class:`tepui.master.core.MasterCore`, whose state it
shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


from tepui.master.events import OperatorError, UpdateQuota, UpdateWeights
from tepui.master.records import AgentRecord, FrameworkRecord, TaskRecord
from tepui.master.registry import Recovered, agent_entry, quota_entry, weight_entry
from tepui.master.admission.validation import roles_problem
from tepui.offers.allocator import Allocator
from tepui.offers.roles import Quota
from tepui.sdk.effects import Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo, Resource
from tepui.sdk.resources import EMPTY, Resources

if TYPE_CHECKING:
    from tepui.master.core import MasterConfig

Effect = Any
RESUBSCRIBE_HEARTBEATS = 5  # the SDK driver's MISSED_HEARTBEATS
REREGISTER_WINDOW = ("reregister_window",)


class DurableState:
    config: MasterConfig
    allocator: Allocator
    frameworks: dict[str, FrameworkRecord]
    recovered_agents: dict[str, AgentInfo]

    if TYPE_CHECKING:
        def _request_allocation(self) -> None: ...
        def _finish_task(self, task: TaskRecord, state: Any, now: float) -> None: ...
        def _placeholder_framework(self, framework_id: str, frameworks: list[FrameworkInfo],
                                   now: float) -> FrameworkRecord: ...
        def _recover_partitions(self, recovered: Recovered, now: float, out: list[Effect]) -> None: ...

    def recover(self, recovered: Recovered, now: float) -> list[Effect]:
        """Before ``start``: what the registry kept. Weights and quotas apply at once;
        frameworks wait, inactive, for their failover timeout; agents have
        ``agent_reregister_timeout`` to come back (with the resources the registry kept,
        dynamic reservations and volumes included) before they are marked unreachable;
        unreachable and gone agents stay so (see :mod:`tepui.master.partitions`)."""
        out: list[Effect] = []
        for role, weight in recovered.weights.items():
            self.allocator.set_weight(role, weight)
        for role, quota in recovered.quotas.items():
            self.allocator.set_quota(role, quota)
        for framework_id, info in recovered.frameworks.items():
            record = FrameworkRecord(framework_id, info, None, now, active=False, disconnected_at=now)
            self.frameworks[framework_id] = record
            self.allocator.add_framework(framework_id, info.roles)
            self.allocator.deactivate_framework(framework_id)
            out.append(ScheduleTimer(now + max(info.failover_timeout, self._resubscribe_grace), ("failover", framework_id)))
        self.recovered_agents = dict(recovered.agents)
        self._recover_partitions(recovered, now, out)
        if self.recovered_agents:
            out.append(ScheduleTimer(now + self.config.agent_reregister_timeout, REREGISTER_WINDOW))
        out.append(Log("info", "registry_recovered", {
            "agents": len(recovered.agents), "unreachable_agents": len(recovered.unreachable),
            "gone_agents": len(recovered.gone), "frameworks": len(recovered.frameworks),
            "weights": len(recovered.weights), "quotas": len(recovered.quotas)}))
        return out

    @property
    def _resubscribe_grace(self) -> float:
        """How long a framework recovered from the registry has at least to re-subscribe: a
        master restart is not the framework's disconnect, and an SDK driver may need five
        missed heartbeats to notice a silent master (it re-subscribes at once when its
        connection comes back). Without it a framework with ``failover_timeout`` 0 (Mesos's
        default, ``tepui run``'s) was removed — its tasks killed — the moment a master restarted."""
        return RESUBSCRIBE_HEARTBEATS * self.config.heartbeat_interval

    # --- operator calls -------------------------------------------------------------------

    def _on_update_weights(self, event: UpdateWeights, out: list[Effect]) -> None:
        for role, weight in event.weights.items():
            problem = roles_problem([role])
            if problem or not weight > 0:
                out.append(OperatorError(f"weights.{role}", problem or f"weight must be > 0, got {weight}"))
                return
        for role, weight in event.weights.items():
            self.allocator.set_weight(role, weight)
            out.append(weight_entry(role, weight))
        out.append(Log("info", "weights_updated", {"weights": event.weights}))
        self._request_allocation()

    def _on_update_quota(self, event: UpdateQuota, out: list[Effect]) -> None:
        problem = roles_problem([event.role])
        if problem:
            out.append(OperatorError("role", problem))
            return
        quota = None
        if event.guarantee is not None or event.limit is not None:
            quota = Quota(guarantee=dict((event.guarantee or EMPTY).fixed_totals()),
                          limit=dict((event.limit or EMPTY).fixed_totals()))
        try:
            self.allocator.set_quota(event.role, quota)
        except ValueError as exc:
            out.append(OperatorError("guarantee", str(exc)))
            return
        out.append(quota_entry(event.role, self.allocator.quotas.get(event.role)))
        out.append(Log("info", "quota_updated", {"role": event.role, "guarantee": event.guarantee, "limit": event.limit}))
        self._request_allocation()

    # --- an agent restarted with more (``--reconfiguration-policy additive``) ----------------

    def _grow_agent(self, agent: AgentRecord, reported: Resources, out: list[Effect]) -> None:
        """The agent re-registers offering more than before: the extra joins its total (and the
        registry). Anything else (the same, or less, which the agent's own policy refuses
        anyway) changes nothing: its total carries reservations and volumes the master made."""
        if agent.reported is None or reported == agent.reported or not reported.contains(agent.reported):
            return
        extra = reported - agent.reported
        agent.total = agent.total + extra
        agent.reported = reported
        self.allocator.grow_agent(agent.agent_id, extra)
        out.append(agent_entry(agent))
        out.append(Log("info", "agent_resources_grown", {"agent_id": agent.agent_id, "extra": str(extra)}))
        self._request_allocation()

    @staticmethod
    def _readmitted_resources(kept: AgentInfo, reported: AgentInfo) -> list[Resource]:
        """The registry's copy of a returning agent's resources wins (it carries reservations and
        volumes), unless it holds none and the agent now offers a superset: then it grew."""
        before, now = Resources.from_wire(kept.resources), Resources.from_wire(reported.resources)
        if not before.has_reservations and now.contains(before):
            return list(reported.resources)
        return list(kept.resources)

    # --- what a re-registering agent says ended -------------------------------------------

    def _ended_on_agent(self, agent: AgentRecord, report: am.TaskReport, frameworks: list[FrameworkInfo],
                        now: float) -> None:
        """A task that ended on a re-registering agent whose final update is not acknowledged
        yet (it is on its way): its resources return now, and a reconciliation answers its real
        end rather than "unknown" (which the framework would take for a launch that was lost)."""
        key = (report.framework_id, report.task.task_id)
        task = agent.tasks.get(key)
        if task is not None:
            self._finish_task(task, report.state, now)
            return
        framework = self.frameworks.get(report.framework_id)
        if framework is None:
            framework = self._placeholder_framework(report.framework_id, frameworks, now)
        held = framework.tasks.get(report.task.task_id)
        if held is not None:
            if held.agent_id == agent.agent_id:
                # Held (UNREACHABLE) while this agent was away, so on no agent record and holding
                # no resources: it ended there. Left held, reconciliation answered UNREACHABLE
                # for a FINISHED task, and the agent's next return put it back on the agent with
                # its resources (overcommitting the agent) and had the agent answer DROPPED.
                self._finish_task(held, report.state, now)
            return
        if any(t.task_id == report.task.task_id for t in framework.completed):
            return
        role = framework.info.roles[0] if framework.info.roles else "*"
        ended = TaskRecord(report.framework_id, agent.agent_id, report.task, EMPTY, role, report.state)
        ended.launched_at = now
        framework.completed.append(ended)
