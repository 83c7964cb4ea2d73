"""The life of an offer, the flow: allocation cycles, DECLINE, ACCEPT with its operations
(LAUNCH, LAUNCH_GROUP, RESERVE, UNRESERVE, CREATE, DESTROY), REVIVE, SUPPRESS, declared demand
and explanations. The offers themselves are the :class:`~tepui.master.offering.offer_book.OfferBook`'s;
decline filters, revive and suppress are the allocator's. It lives apart from the membership of
agents and frameworks because the life of an offer is one idea and membership another.

Mesos semantics: offers count as allocated until used, declined, rescinded or timed out; an
ACCEPT names offers of one agent, each at most once, or every task in it is dropped and every
valid offer's resources return; the unused part of an accepted offer is declined with the
call's filters (default 5 s).
"""

from __future__ import annotations

from typing import MutableMapping

from tepui.master.admission.gatekeeper import Gatekeeper
from tepui.master.offering.accept_salvage import LeftOut, PartialAccept
from tepui.master.config import MasterConfig
from tepui.master.events import AllocateBatch, AllocateNow, Log, MasterEffect, ScheduleTimer, Send
from tepui.master.offering.offer_book import OfferBook
from tepui.master.offering.pool import Pool
from tepui.master.failures.task_audit import TaskAudits
from tepui.master.tasks.task_ends import update_to
from tepui.master.records import AgentRecord, FrameworkRecord, OfferRecord, TaskRecord
from tepui.master.admission.refusals import shown
from tepui.master.durability.registry import agent_entry
from tepui.master.members.roster import Roster
from tepui.master.offering.reservations import plan_reserve, plan_unreserve
from tepui.master.offering.volumes import plan_create, plan_destroy
from tepui.master.admission.validation import EitherOf, checked_task, demand_of, demand_problem
from tepui.offers.explain import explain
from tepui.offers.roles import DEFAULT_ROLE
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import Offer, RoleExplanation, TaskInfo, TaskReason, TaskSource, TaskState, TaskStatus
from tepui.sdk.resources import EMPTY, Resources



class OfferCycle:
    def __init__(self, config: MasterConfig, counters: MutableMapping[str, int], roster: Roster,
                 offers: OfferBook, pool: Pool, gatekeeper: Gatekeeper, audits: TaskAudits) -> None:
        self._config = config
        self._counters = counters
        self._roster = roster
        self._offers = offers
        self._pool = pool
        self._gatekeeper = gatekeeper
        self._audits = audits

    def on_allocate_now(self, key: AllocateNow, now: float, out: list[MasterEffect]) -> None:
        self._allocate(now, out, incremental=True)

    def on_allocate_batch(self, key: AllocateBatch, now: float, out: list[MasterEffect]) -> None:
        self._allocate(now, out)
        out.append(ScheduleTimer(now + self._config.allocation_interval, AllocateBatch()))

    def _allocate(self, now: float, out: list[MasterEffect], incremental: bool = False) -> None:
        by_framework: dict[str, list[Offer]] = {}
        for allocation in self._pool.allocator.allocate(now, incremental=incremental):
            framework = self._roster.frameworks.get(allocation.framework_id)
            agent = self._roster.agents.get(allocation.agent_id)
            if framework is None or agent is None or framework.peer is None:
                self._pool.recover(allocation.agent_id, allocation.framework_id, allocation.role, allocation.resources)
                continue
            offer_id = self._roster.next_id("O")
            record = OfferRecord(offer_id, framework.framework_id, agent.agent_id, allocation.role, allocation.resources, now)
            self._offers.open(record, now, out)
            by_framework.setdefault(framework.framework_id, []).append(Offer(
                id=offer_id,
                framework_id=framework.framework_id,
                agent_id=agent.agent_id,
                hostname=agent.hostname,
                resources=allocation.resources.to_wire(),
                attributes=dict(agent.attributes),
                allocation_role=allocation.role,
                address=agent.address,
            ))
            self._counters["offers_sent"] += 1
        for framework_id, offers in by_framework.items():
            peer = self._roster.frameworks[framework_id].peer
            assert peer is not None
            out.append(Send(peer, sm.Offers(offers)))

    def on_decline(self, peer: bytes, msg: sm.Decline, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is None:
            return
        if not msg.offer_ids:
            out.append(Send(peer, sm.Error("DECLINE names no offer; nothing was declined", field="$.body.offer_ids")))
            return
        refuse = msg.filters.refuse_seconds if msg.filters else 5.0
        unknown: list[int] = []
        for index, offer_id in enumerate(msg.offer_ids):
            offer = self._offers.get(offer_id)
            if offer is None or offer.framework_id != framework.framework_id:
                unknown.append(index)  # Mesos ignores it; here the framework hears it (below)
                continue
            self._offers.withdraw(offer_id, out)
            self._pool.recover(offer.agent_id, offer.framework_id, offer.role, offer.resources, refuse, now)
        if unknown:
            rest = "; the others were declined" if len(unknown) < len(msg.offer_ids) else ""
            out.append(Send(peer, sm.Error(
                f"DECLINE: {_not_outstanding([msg.offer_ids[i] for i in unknown])}{rest}",
                field=f"$.body.offer_ids[{unknown[0]}]" if len(unknown) == 1 else None)))
        self._pool.request_allocation()

    def on_accept(self, peer: bytes, msg: sm.Accept, now: float, out: list[MasterEffect]) -> None:
        left_out = msg.left_out if isinstance(msg, PartialAccept) else []
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is None:
            # Mesos: a launch from a framework that is not (or no longer) subscribed here is
            # dropped; the sender hears it for each task.
            tasks = [(t.task_id, t.agent_id) for t in _tasks_of(msg.operations)]
            for task_id, agent_id in tasks + [(left.task_id, None) for left in left_out if left.task_id]:
                status = TaskStatus(task_id=task_id, state=TaskState.DROPPED, source=TaskSource.MASTER,
                                    reason=TaskReason.INVALID_FRAMEWORKID, agent_id=agent_id, timestamp=now,
                                    message="the framework is not subscribed on this connection; nothing was launched")
                out.append(Send(peer, sm.Update(status)))
            return
        if left_out:
            self._answer_left_out(framework, msg, left_out, now, out)
        offers, problem, field, unknown = [], None, None, []
        if not msg.offer_ids:
            problem, field = "ACCEPT names no offer", "$.body.offer_ids"
        elif len(set(msg.offer_ids)) != len(msg.offer_ids):
            problem = "ACCEPT names the same offer more than once"
        for index, offer_id in enumerate(msg.offer_ids):
            offer = self._offers.get(offer_id)
            if offer is None or offer.framework_id != framework.framework_id:
                unknown.append(index)
            else:
                offers.append(offer)
        if unknown and problem is None:
            problem = _not_outstanding([msg.offer_ids[i] for i in unknown])
            field = f"$.body.offer_ids[{unknown[0]}]" if len(unknown) == 1 else None
        if offers and len({o.agent_id for o in offers}) > 1:
            problem = problem or "ACCEPT combines offers of different agents"
        for offer in offers:
            self._offers.withdraw(offer.offer_id, out)
        if problem is not None:
            # Mesos: every task in the call is dropped, and every valid offer's resources return.
            out.append(Send(peer, sm.Error(
                f"ACCEPT refused: {problem}. Nothing in it was done: each of its tasks is answered TASK_DROPPED "
                "(TASK_LOST without PARTITION_AWARE), and the resources of its other offers were returned",
                field=field)))
            for offer in offers:
                self._pool.recover(offer.agent_id, offer.framework_id, offer.role, offer.resources)
            state = TaskState.DROPPED if framework.partition_aware else TaskState.LOST
            for task in _tasks_of(msg.operations):
                if self._already_launched(framework, task.task_id):
                    # The same ACCEPT again (a retry, or the network delivered it twice): the
                    # task runs from the first copy; a DROPPED now would be a lie the framework
                    # acts on (it would launch the work again).
                    self._counters["duplicate_launches_ignored"] += 1
                    out.append(Log("info", "duplicate_launch_ignored", {"task_id": task.task_id}))
                    continue
                out.append(update_to(framework, task.task_id, task.agent_id, state, TaskReason.INVALID_OFFERS, problem, now))
            self._pool.request_allocation()
            return
        agent = self._roster.agents[offers[0].agent_id]
        role = offers[0].role
        available = EMPTY
        for offer in offers:
            available = available + offer.resources
        for operation in msg.operations:
            available = self._apply(operation, framework, agent, role, available, now, out)
        refuse = msg.filters.refuse_seconds if msg.filters else 5.0
        self._pool.recover(agent.agent_id, framework.framework_id, role, available, refuse, now)
        self._pool.request_allocation()

    def _answer_left_out(self, framework: FrameworkRecord, msg: sm.Accept, left_out: list[LeftOut], now: float,
                         out: list[MasterEffect]) -> None:
        """Mesos per operation: a task that could not be read is answered TASK_ERROR (the rest
        of the call goes on); a part no task names, with an ERROR (master/offering/accept_salvage.py)."""
        agent_id = next((self._offers.offers[o].agent_id for o in msg.offer_ids if o in self._offers), None)
        for left in left_out:
            if left.task_id is None:
                out.append(Send(framework.peer or b"", sm.Error(left.problem, field=left.field)))
                continue
            self._counters["tasks_invalid"] += 1
            reason = TaskReason.TASK_GROUP_INVALID if left.group else TaskReason.TASK_INVALID
            out.append(update_to(framework, left.task_id, agent_id, TaskState.ERROR, reason, left.problem, now))

    @staticmethod
    def _already_launched(framework: FrameworkRecord, task_id: str) -> bool:
        return task_id in framework.tasks or any(t.task_id == task_id for t in framework.completed)

    def _apply(
        self, operation: sm.Operation, framework: FrameworkRecord, agent: AgentRecord, role: str,
        available: Resources, now: float, out: list[MasterEffect],
    ) -> Resources:
        if isinstance(operation, sm.Launch):
            for task_info in operation.task_infos:
                checked = checked_task(task_info, agent.agent_id, available, framework.tasks,
                                       self._config.allow_host_volumes)
                if isinstance(checked, str):
                    self._counters["tasks_invalid"] += 1
                    out.append(update_to(framework, task_info.task_id, agent.agent_id, TaskState.ERROR,
                                         TaskReason.TASK_INVALID, checked, now))
                    continue
                problem = self._gatekeeper.task_unauthorized(framework, agent, task_info)
                if problem is not None:
                    self._gatekeeper.refuse_task(framework, problem, out)
                    out.append(update_to(framework, task_info.task_id, agent.agent_id, TaskState.ERROR,
                                         TaskReason.TASK_UNAUTHORIZED, problem, now))
                    continue
                available = self._record_task(framework, agent, role, task_info, checked, available, now)
                out.append(Send(agent.peer, am.RunTask(framework.info, task_info)))
            return available
        if isinstance(operation, sm.LaunchGroup):
            return self._launch_group(operation, framework, agent, role, available, now, out)
        if isinstance(operation, (sm.Reserve, sm.Unreserve, sm.Create, sm.Destroy)):
            refusal = self._gatekeeper.operation_unauthorized(operation, framework, role, out)
            if refusal is not None:
                out.append(Send(framework.peer or b"", sm.Error(refusal + "; the offer's resources were returned")))
                return available
            if isinstance(operation, sm.Reserve):
                plan = plan_reserve(operation.resources, role, framework.info.principal, available)
            elif isinstance(operation, sm.Unreserve):
                plan = plan_unreserve(operation.resources, role, available)
            elif isinstance(operation, sm.Create):
                existing = {key.volume for key in agent.total.volumes() if key.volume}
                plan = plan_create(operation.volumes, role, available, existing)
            else:
                plan = plan_destroy(operation.volumes, role, available)
            if isinstance(plan, str):
                self._counters["operations_invalid"] += 1
                out.append(Send(framework.peer or b"", sm.Error(plan + "; the offer's resources were returned")))
                return available
            consumed, converted = plan
            self._pool.allocator.convert(agent.agent_id, framework.framework_id, role, consumed, converted)
            agent.total = agent.total - consumed + converted
            # The agent's resources now carry the reservation or volume: the registry keeps them.
            out.append(agent_entry(agent))
            self._counters["reservations_changed"] += 1
            if isinstance(operation, sm.Destroy):
                out.append(Send(agent.peer, am.DestroyVolumes(consumed.to_wire())))
            out.append(Log("info", "reservation_changed", {
                "agent_id": agent.agent_id, "framework_id": framework.framework_id,
                "operation": type(operation).__name__.upper(), "resources": str(converted)}))
            return available - consumed + converted
        name = type(operation).__name__.upper()
        tasks = _tasks_of([operation])
        message = f"operation {name} is not supported by this master yet; resources were returned"
        for task in tasks:
            out.append(update_to(framework, task.task_id, agent.agent_id, TaskState.ERROR,
                                 TaskReason.TASK_GROUP_INVALID, message, now))
        if not tasks:
            out.append(Send(framework.peer or b"", sm.Error(message)))
        return available

    def _record_task(self, framework: FrameworkRecord, agent: AgentRecord, role: str, task_info: TaskInfo,
                     resources: Resources, available: Resources, now: float) -> Resources:
        """Mesos: the master records a task before forwarding it (at most once per task id);
        ``resources`` are the task's as :func:`checked_task` parsed them."""
        task = TaskRecord(framework.framework_id, agent.agent_id, task_info, resources, role, launched_at=now,
                          launch_mark=self._audits.launched())
        task.record(TaskState.STAGING, now)
        framework.tasks[task.task_id] = task
        agent.tasks[(framework.framework_id, task.task_id)] = task
        self._counters["tasks_launched"] += 1
        return available.subtract_contained(resources)  # checked_task checked that it fits

    def _launch_group(self, operation: sm.LaunchGroup, framework: FrameworkRecord, agent: AgentRecord, role: str,
                      available: Resources, now: float, out: list[MasterEffect]) -> Resources:
        """All tasks of the group are valid together or none is launched (Mesos LAUNCH_GROUP)."""
        tasks = list(operation.task_group.tasks)
        problem = None if tasks else "LAUNCH_GROUP has no tasks"
        if problem is None and operation.executor.type != "DEFAULT":
            problem = "LAUNCH_GROUP needs an executor of type DEFAULT"
        unauthorized = None if problem else self._gatekeeper.group_unauthorized(framework, agent, tasks, operation.executor, out)
        problem = problem or unauthorized
        remaining, seen, parsed = available, set[str](), list[Resources]()
        for task_info in tasks:
            if problem is not None:
                break
            if task_info.executor is not None:
                problem = f"task {task_info.task_id!r}: tasks of a group take no executor of their own"
                break
            checked = checked_task(task_info, agent.agent_id, remaining, EitherOf(framework.tasks, seen),
                                   self._config.allow_host_volumes)
            if isinstance(checked, str):
                problem = checked
            else:
                remaining = remaining - checked
                seen.add(task_info.task_id)
                parsed.append(checked)
        if problem is not None:
            self._counters["tasks_invalid"] += 0 if unauthorized else len(tasks)
            reason = TaskReason.TASK_GROUP_UNAUTHORIZED if unauthorized else TaskReason.TASK_GROUP_INVALID
            for task_info in tasks:
                out.append(update_to(framework, task_info.task_id, agent.agent_id, TaskState.ERROR,
                                     reason, f"task group refused: {problem}", now))
            return available
        for task_info, resources in zip(tasks, parsed):
            available = self._record_task(framework, agent, role, task_info, resources, available, now)
        out.append(Send(agent.peer, am.RunTaskGroup(framework.info, operation.executor, operation.task_group)))
        return available

    def on_revive(self, peer: bytes, msg: sm.Revive, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is not None:
            self._pool.allocator.revive(framework.framework_id, msg.roles)
            _refuse_foreign_roles(peer, framework, msg.roles, "REVIVE", out)
            self._pool.request_allocation()

    def on_suppress(self, peer: bytes, msg: sm.Suppress, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is not None:
            self._pool.allocator.suppress(framework.framework_id, msg.roles)
            _refuse_foreign_roles(peer, framework, msg.roles, "SUPPRESS", out)

    # --- declared demand and explanations ------------------------------------------------

    def on_declare_demand(self, peer: bytes, msg: sm.DeclareDemand, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is None:
            return
        problem = demand_problem(msg.demand)
        if problem:
            out.append(Send(peer, sm.Error(f"DECLARE_DEMAND refused: {problem}")))
            return
        self._pool.allocator.declare_demand(framework.framework_id, demand_of(msg.demand))
        self._pool.request_allocation()

    def on_explain(self, peer: bytes, msg: sm.Explain, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is not None:
            roles = [RoleExplanation(e.role, e.reason, e.message) for e in explain(self._pool.allocator, framework.framework_id, now)]
            out.append(Send(peer, sm.Explanation(roles)))


def _refuse_foreign_roles(peer: bytes, framework: FrameworkRecord, roles: list[str], call: str,
                          out: list[MasterEffect]) -> None:
    """REVIVE and SUPPRESS act on the framework's own roles only (the allocator ignores the
    rest); the others are named back, so a typo is not silently a no-op."""
    own = set(framework.info.roles or [DEFAULT_ROLE])
    foreign = [index for index, role in enumerate(roles) if role not in own]
    if foreign:
        names = ", ".join(shown(roles[i]) for i in foreign[:10]) + (", ..." if len(foreign) > 10 else "")
        out.append(Send(peer, sm.Error(
            f"{call}: not a role of framework {framework.framework_id} (it has {', '.join(sorted(own))}): {names}; "
            "ignored. Add a role with UPDATE_FRAMEWORK first", field=f"$.body.roles[{foreign[0]}]"
            if len(foreign) == 1 else None)))


def _not_outstanding(offer_ids: list[str]) -> str:
    """Why an offer id names no outstanding offer, said so that the usual cause — the call
    crossed a RESCIND (or the offer timeout) on the way — reads as the harmless race it is."""
    names = ", ".join(shown(offer_id) for offer_id in offer_ids[:10]) + (", ..." if len(offer_ids) > 10 else "")
    many = len(offer_ids) > 1
    return (f"offer{'s' if many else ''} {names} {'are' if many else 'is'} not valid: rescinded or timed out (a "
            "normal race with RESCIND: nothing to do), used or declined already, or never made to this framework")


def _tasks_of(operations: list[sm.Operation]) -> list[TaskInfo]:
    tasks: list[TaskInfo] = []
    for operation in operations:
        if isinstance(operation, sm.Launch):
            tasks.extend(operation.task_infos)
        elif isinstance(operation, sm.LaunchGroup):
            tasks.extend(operation.task_group.tasks)
    return tasks
