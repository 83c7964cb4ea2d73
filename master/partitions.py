"""Failure detection and partitions, the master's half: pings, unreachable and gone agents,
rate-limited removals, the end of the re-registration window after a failover, and the
reconciliation answers that depend on where an agent is.

A mixin of :class:`tepui.master.core.MasterCore`, whose state it shares (the way
:mod:`tepui.master.durable` is). Mesos semantics, cited where they matter:

- An agent that answers no ping for ``agent_ping_interval × max_agent_ping_timeouts`` is
  marked UNREACHABLE: its tasks become TASK_UNREACHABLE for PARTITION_AWARE frameworks (LOST
  for the others), the registry moves it from ``agents`` to ``unreachable``, and the master
  stops pinging it. Tepui detects in 10 s by default (2 s × 5); Mesos waits 75 s (15 s × 5).
- Removals are rate limited (``--agent_removal_rate_limit``): agents found silent queue up and
  are marked one per slot; an agent heard from while it waits cancels its removal.
- An unreachable agent that re-registers is admitted again under its id, with the resources
  the registry kept (reservations, volumes); its tasks come back. After ``agent_gone_timeout``
  it is GONE instead: its tasks end TASK_GONE (LOST), and it may never come back under its id
  (Mesos ``markAgentGone``; the timeout plays the part of ``--registry_max_agent_age``).
- After a failover, agents the registry knew that do not re-register within
  ``agent_reregister_timeout`` become unreachable, unless more than
  ``recovery_agent_removal_limit`` percent of them are missing: then the master exits, because
  that looks like a partition of the master, not the failure of that many machines.
- Explicit reconciliation gives no answer for a task that may be on an agent still expected
  to re-register; the framework asks again (Mesos reconciliation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tepui.master.events import Abort, Received, Send
from tepui.master.records import AgentRecord, FrameworkRecord, TaskRecord, UnreachableAgent
from tepui.master.admission.validation import task_resources
from tepui.sdk.resources import EMPTY
from tepui.master.task_audit import TaskAudits
from tepui.master.registry import AGENTS, Persist, agent_info_of, gone_entry, unreachable_entry
from tepui.offers.allocator import Allocator
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo, TaskReason, TaskSource, TaskState, TaskStatus

if TYPE_CHECKING:
    from tepui.master.core import MasterConfig
    from tepui.master.registry import Recovered

Effect = Any
REMOVAL_SLOT = ("agent_removal_slot",)
GONE_TIMER = "agent_gone"


@dataclass(frozen=True)
class RemovalRate:
    """At most ``permits`` agents marked unreachable per ``seconds``: one every
    ``seconds / permits`` (Mesos ``--agent_removal_rate_limit``, e.g. ``1/20mins``)."""

    permits: int
    seconds: float

    @property
    def interval(self) -> float:
        return self.seconds / self.permits

    def __str__(self) -> str:
        return f"{self.permits}/{self.seconds:g}s"


_UNITS = {
    "ms": 0.001, "s": 1.0, "sec": 1.0, "secs": 1.0, "m": 60.0, "min": 60.0, "mins": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def parse_removal_rate(text: str | None) -> RemovalRate | None:
    """``N/DURATION`` such as ``1/20mins``, ``5/1m`` or ``1/30s`` (a bare unit means one of
    it: ``10/min``); ``unlimited`` (or nothing) for no limit. Raises ValueError saying what is
    wrong and what is expected."""
    if text is None or text.strip().lower() in ("", "unlimited", "none"):
        return None
    match = _RATE.match(text.lower())
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(f"agent removal rate {text!r} is not N/DURATION: write e.g. 1/20mins, 5/1m or 1/30s "
                         "(units: ms, s/secs, m/mins, h/hrs, d/days, w/weeks), or 'unlimited'")
    permits, amount = int(match.group(1)), float(match.group(2) or 1)
    seconds = amount * _UNITS[match.group(3)]
    if permits < 1 or seconds <= 0:
        raise ValueError(f"agent removal rate {text!r} must allow at least one removal per positive duration")
    return RemovalRate(permits, seconds)


def parse_percent(text: str) -> float:
    """``50%`` or ``50`` → 50.0, between 0 and 100 (Mesos ``--recovery_agent_removal_limit``)."""
    value = text.strip().removesuffix("%").strip()
    try:
        percent = float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage: write e.g. 100% or 50") from None
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"{text!r} is not between 0% and 100%")
    return percent


class Partitions:
    # State owned by MasterCore; declared for type checkers.
    config: MasterConfig
    allocator: Allocator
    agents: dict[str, AgentRecord]
    frameworks: dict[str, FrameworkRecord]
    recovered_agents: dict[str, AgentInfo]
    counters: Any
    audits: TaskAudits
    completed_frameworks: Any
    _ping_seq: int

    if TYPE_CHECKING:  # provided by MasterCore
        def _framework_for(self, peer: bytes, framework_id: str, out: list[Effect]) -> FrameworkRecord | None: ...
        def _remove_agent(self, agent: AgentRecord, state: TaskState, reason: TaskReason, message: str, now: float,
                          out: list[Effect], level: str = "warning") -> None: ...
        def _master_update(self, task: TaskRecord, state: TaskState, reason: TaskReason, message: str,
                           now: float, out: list[Effect]) -> None: ...
        def _agent_by_peer(self, peer: bytes) -> AgentRecord | None: ...
        def _ended_on_agent(self, agent: AgentRecord, report: am.TaskReport, frameworks: list[FrameworkInfo],
                            now: float) -> None: ...
        def _placeholder_framework(self, framework_id: str, frameworks: list[FrameworkInfo],
                                   now: float) -> FrameworkRecord: ...
        def _update_to(self, framework: FrameworkRecord, task_id: str, agent_id: str | None, state: TaskState,
                       reason: TaskReason, message: str, now: float) -> Effect: ...

    def _init_partitions(self) -> None:
        self.unreachable: dict[str, UnreachableAgent] = {}
        self.gone: dict[str, float] = {}  # agent id → gone since, oldest first
        self._removals: dict[str, float] = {}  # agents waiting for a removal slot → queued at
        self._next_removal_at = float("-inf")
        self._recovered_count = 0  # agents the registry knew at the last failover

    # --- failure detection ----------------------------------------------------------------

    @property
    def ping_interval(self) -> float:
        """The configured interval, or longer on a cluster so large that pings would pass
        ``max_agent_pings_per_second``: pings and pongs then stop crowding out real work (at
        10,000 agents and 2 s they were 10,000 messages a second both ways)."""
        interval = self.config.agent_ping_interval
        rate = self.config.max_agent_pings_per_second
        if rate:
            interval = max(interval, len(self.agents) / rate)
        return interval

    @property
    def _silence_limit(self) -> float:
        return self.ping_interval * self.config.max_agent_ping_timeouts

    def _ping_agents(self, now: float, out: list[Effect]) -> None:
        """Application-level pings (ZMTP heartbeats only prove an I/O thread lives, so an agent
        whose main loop hangs with its socket up still answers those, never these). A silent
        agent is queued for removal and still pinged: a pong before its slot cancels it."""
        self._ping_seq += 1
        for agent in self.agents.values():
            if now - agent.last_pong > self._silence_limit and agent.agent_id not in self._removals:
                self._removals[agent.agent_id] = now
                self.counters["agent_unreachable_scheduled"] += 1
        self._remove_due(now, out)
        self._retry_audits_and_kills(now, out)
        ping = am.Ping(self._ping_seq, self.ping_interval)
        self.audits.pinged(self._ping_seq)
        for agent in self.agents.values():
            out.append(Send(agent.peer, ping))

    def _on_Pong(self, peer: bytes, msg: am.Pong, now: float, out: list[Effect]) -> None:
        agent = self._agent_by_peer(peer)
        if agent is not None:
            self._heard_from(agent, now, out)
            if self.audits.pong_disagrees(agent.agent_id, msg, agent.tasks):
                out.append(Log("info", "task_digest_mismatch", {
                    "agent_id": agent.agent_id, "agent_tasks": msg.tasks, "master_tasks": len(agent.tasks),
                    "action": "auditing the agent's tasks"}))
                self._audit(agent, now, out)

    def _heard_from(self, agent: AgentRecord, now: float, out: list[Effect]) -> None:
        agent.last_pong = now
        if self._removals.pop(agent.agent_id, None) is not None:
            self.counters["agent_unreachable_canceled"] += 1
            out.append(Log("info", "agent_removal_canceled", {"agent_id": agent.agent_id, "reason": "answered again"}))

    def _remove_due(self, now: float, out: list[Effect]) -> None:
        """Marks queued agents unreachable, first queued first, as fast as the removal rate
        allows; the next slot is a timer. An agent heard from meanwhile is not removed (and
        uses no slot)."""
        rate = self.config.agent_removal_rate
        while self._removals:
            if rate is not None and now < self._next_removal_at:
                out.append(ScheduleTimer(self._next_removal_at, REMOVAL_SLOT))
                return
            agent_id = next(iter(self._removals))
            del self._removals[agent_id]
            agent = self.agents.get(agent_id)
            if agent is not None:
                if now - agent.last_pong <= self._silence_limit:
                    self.counters["agent_unreachable_canceled"] += 1
                    out.append(Log("info", "agent_removal_canceled", {"agent_id": agent_id, "reason": "answered again"}))
                    continue
                self._mark_unreachable(agent, now, out)
            elif agent_id in self.recovered_agents:
                info = self.recovered_agents.pop(agent_id)
                out.append(Persist(AGENTS, agent_id, None))
                self._add_unreachable(agent_id, UnreachableAgent(info, now), now, out)
                out.append(Log("warning", "agent_unreachable", {
                    "agent_id": agent_id, "reason": "did not re-register within the re-registration window"}))
            else:
                continue  # it left (unregistered) or came back under another record meanwhile
            if rate is not None:
                self._next_removal_at = now + rate.interval
            self.counters["agent_unreachable_completed"] += 1

    def _mark_unreachable(self, agent: AgentRecord, now: float, out: list[Effect]) -> None:
        info = agent_info_of(agent)  # before removal: its total carries reservations and volumes
        self._remove_agent(agent, TaskState.UNREACHABLE, TaskReason.AGENT_DISCONNECTED,
                           f"agent answered no ping for {self._silence_limit:g} s", now, out)
        out.append(Persist(AGENTS, agent.agent_id, None))
        self._add_unreachable(agent.agent_id, UnreachableAgent(info, now), now, out)

    def _add_unreachable(self, agent_id: str, unreachable: UnreachableAgent, now: float, out: list[Effect]) -> None:
        self.unreachable[agent_id] = unreachable
        out.append(unreachable_entry(agent_id, unreachable))
        out.append(ScheduleTimer(max(now, unreachable.since + self.config.agent_gone_timeout), (GONE_TIMER, agent_id)))

    # --- gone agents ----------------------------------------------------------------------

    def _agent_gone_timer(self, agent_id: str, now: float, out: list[Effect]) -> None:
        """Unreachable for ``agent_gone_timeout``: the agent is gone for good. Its tasks end
        (TASK_GONE, or LOST for frameworks that are not PARTITION_AWARE, which already heard
        LOST), and it is refused if it ever comes back under its id."""
        unreachable = self.unreachable.get(agent_id)
        if unreachable is None or now < unreachable.since + self.config.agent_gone_timeout:
            return
        self._mark_gone(agent_id, f"unreachable for more than {self.config.agent_gone_timeout:g} s", now, out)

    def _mark_gone(self, agent_id: str, why: str, now: float, out: list[Effect]) -> None:
        """An unreachable agent is gone for good (also usable when the master learns it for
        certain, e.g. its host rebooted and registered as a new agent)."""
        unreachable = self.unreachable.pop(agent_id, None)
        if unreachable is None:
            return
        out.append(unreachable_entry(agent_id, None))
        out.append(CancelTimer((GONE_TIMER, agent_id)))
        self._add_gone(agent_id, now, out)
        message = f"agent {agent_id} is gone: {why}"
        for framework in self.frameworks.values():
            state = TaskState.GONE if framework.partition_aware else TaskState.LOST
            for task in [t for t in framework.tasks.values() if t.agent_id == agent_id]:
                self._master_update(task, state, TaskReason.AGENT_REMOVED, message, now, out)
        self.counters["agents_gone"] += 1
        out.append(Log("warning", "agent_gone", {"agent_id": agent_id, "reason": why,
                                                 "unreachable_since": unreachable.since}))

    def _forget_rebooted(self, agent_id: str, now: float, out: list[Effect]) -> None:
        """An agent registers anew after its host rebooted (Mesos: a new boot id means a new
        agent): its old incarnation is gone for certain, and so are its tasks — TASK_GONE at
        once (LOST for frameworks that are not PARTITION_AWARE), not after the detection time."""
        why = "its host rebooted and it registered as a new agent"
        old = self.agents.get(agent_id)
        if old is None and agent_id in self.recovered_agents:
            # Known from the registry after a failover, never re-registered: gone now, not
            # unreachable when the re-registration window closes.
            del self.recovered_agents[agent_id]
            out.append(Persist(AGENTS, agent_id, None))
            self._add_gone(agent_id, now, out)
            self.counters["agents_gone"] += 1
            out.append(Log("warning", "agent_gone", {"agent_id": agent_id, "reason": why}))
        elif old is not None:
            self._remove_agent(old, TaskState.GONE, TaskReason.AGENT_RESTARTED, f"agent {agent_id} is gone: {why}",
                               now, out)
            out.append(Persist(AGENTS, agent_id, None))
            self._add_gone(agent_id, now, out)
            self.counters["agents_gone"] += 1
            out.append(Log("warning", "agent_gone", {"agent_id": agent_id, "reason": why}))
        else:
            self._mark_gone(agent_id, why, now, out)

    def _add_gone(self, agent_id: str, since: float, out: list[Effect]) -> None:
        """The registry keeps at most ``max_gone_agents`` (Mesos ``--registry_max_agent_count``):
        past that the oldest are forgotten, so autoscaled clusters do not grow it forever."""
        self.gone[agent_id] = since
        out.append(gone_entry(agent_id, since))
        while len(self.gone) > self.config.max_gone_agents:
            oldest = next(iter(self.gone))
            del self.gone[oldest]
            out.append(gone_entry(oldest, None))

    def _refuse_gone(self, peer: bytes, agent_id: str, now: float, out: list[Effect]) -> None:
        """Mesos: a gone agent may not re-register under its id; it is told to shut down, and
        why, so that its operator restarts it afresh (it then registers as a new agent)."""
        since = self.gone[agent_id]
        message = (f"agent {agent_id} is gone: it was unreachable for more than {self.config.agent_gone_timeout:g} s "
                   f"(gone for {now - since:.0f} s) and its tasks were reported GONE or LOST; it may not "
                   "re-register under this id. Restart the agent without its old state (its checkpointed agent "
                   "id) and it registers as a new agent.")
        self.counters["gone_agents_refused"] += 1
        out.append(Send(peer, am.ShutdownAgent(message)))
        out.append(Log("warning", "gone_agent_refused", {"agent_id": agent_id}))

    # --- coming back ----------------------------------------------------------------------

    def _kept_agent_info(self, agent_id: str, now: float, out: list[Effect]) -> tuple[AgentInfo | None, bool]:
        """What the registry kept of a re-registering agent the master does not hold (it was
        recovered after a failover, or is unreachable), and whether it was unreachable."""
        kept = self.recovered_agents.pop(agent_id, None)
        if kept is not None:
            return kept, False
        unreachable = self.unreachable.pop(agent_id, None)
        if unreachable is None:
            return None, False
        out.append(unreachable_entry(agent_id, None))
        out.append(CancelTimer((GONE_TIMER, agent_id)))
        self.counters["agents_reachable_again"] += 1
        out.append(Log("info", "agent_reachable_again", {
            "agent_id": agent_id, "unreachable_seconds": round(now - unreachable.since, 1)}))
        return unreachable.info, True

    def _reconcile_unreported(self, agent: AgentRecord, reported: set[tuple[str, str]], was_unreachable: bool,
                              now: float, out: list[Effect]) -> None:
        """Tasks the master placed on a re-registering agent that it did not report: a RUN_TASK
        lost on the way, or one still on its way (the agent re-registered before it arrived).
        Declaring them lost here would be wrong in the second case, so the master audits the
        agent (Mesos sends ``ReconcileTasksMessage`` once; here the audit is asked again until
        answered, see master/task_audit.py): messages to it arrive in order, so it answers
        TASK_DROPPED only for a task it never received. Tasks of an agent that was unreachable
        are put back on it first, with their resources, so the answer frees them."""
        if was_unreachable:
            for framework in self.frameworks.values():
                for task in framework.tasks.values():
                    key = (task.framework_id, task.task_id)
                    if task.agent_id == agent.agent_id and key not in reported and key not in agent.tasks:
                        self._hold_on_agent(agent, key, task, out)
        unreported: dict[str, list[str]] = {}
        for framework_id, task_id in agent.tasks:
            if (framework_id, task_id) not in reported:
                unreported.setdefault(framework_id, []).append(task_id)
        for framework_id, task_ids in unreported.items():
            out.append(Log("warning", "tasks_unknown_to_agent", {
                "agent_id": agent.agent_id, "framework_id": framework_id, "task_ids": ",".join(task_ids),
                "action": "auditing the agent"}))
        if unreported:
            self._audit(agent, now, out)

    # --- audits: anti-entropy with each agent (master/task_audit.py) ----------------------

    def _audit(self, agent: AgentRecord, now: float, out: list[Effect]) -> None:
        infos = {fid: framework.info for fid, framework in self.frameworks.items()}
        out.append(Send(agent.peer, self.audits.ask(agent.agent_id, agent.tasks, infos, now)))

    def _retry_audits_and_kills(self, now: float, out: list[Effect]) -> None:
        """Every ping interval: audits still unanswered are asked again, kills of tasks that
        have not ended are sent again (no decision hangs on one message)."""
        for agent_id in self.audits.unanswered(now, self.ping_interval):
            agent = self.agents.get(agent_id)
            if agent is None:
                self.audits.forget_agent(agent_id)
            else:
                self._audit(agent, now, out)
        for (framework_id, task_id), kill in self.audits.kills_due(now, self.ping_interval):
            agent = self.agents.get(kill.agent_id)
            if agent is None or (framework_id, task_id) not in agent.tasks:
                self.audits.task_ended((framework_id, task_id))
            else:
                out.append(Send(agent.peer, am.KillTask(framework_id, task_id, kill.kill_policy)))

    def _on_TaskAudit(self, peer: bytes, msg: am.TaskAudit, now: float, out: list[Effect]) -> None:
        """The agent's answer to an audit: its tasks become the master's record (see
        :meth:`_adopt_reports`); asked tasks that ended there long ago (their final update
        acknowledged) end here too, and the framework hears that end again (a reconciliation
        answer: it may have been told UNREACHABLE since)."""
        agent = self._agent_by_peer(peer)
        if agent is None:
            self.counters["task_audit_answers_from_unknown_agents"] += 1
            return
        self.audits.answered(agent.agent_id, msg.seq)
        self._adopt_reports(agent, msg.tasks, [], now, out, TaskReason.RECONCILIATION, "its agent reports it")
        for report in msg.ended:
            task = agent.tasks.get((report.framework_id, report.task.task_id))
            if task is not None and report.state.is_terminal:
                self.counters["tasks_ended_by_audit"] += 1
                self._master_update(task, report.state, TaskReason.RECONCILIATION,
                                    "the task ended on its agent and its final update was acknowledged", now, out)

    def _adopt_reports(self, agent: AgentRecord, reports: list[am.TaskReport], frameworks: list[FrameworkInfo],
                       now: float, out: list[Effect], reason: TaskReason = TaskReason.AGENT_REREGISTERED,
                       why: str = "its agent re-registered") -> set[tuple[str, str]]:
        """What an agent says it holds (re-registering, or answering an audit) becomes the
        master's record; the agent is the source of truth for tasks (DESIGN §6). Ended tasks
        whose final update is on its way return their resources now. A task the master held
        as UNREACHABLE takes the reported state and its framework hears it. A task the master
        did not hold is adopted, except one of a framework that was removed (its
        SHUTDOWN_FRAMEWORK was lost: sent again) and, for a framework that is not
        PARTITION_AWARE, one it was told was LOST (killed)."""
        peer, agent_id = agent.peer, agent.agent_id
        reported: set[tuple[str, str]] = set()
        removed = {f.framework_id for f in self.completed_frameworks} - set(self.frameworks)
        shut_down: set[str] = set()
        for report in reports:
            key = (report.framework_id, report.task.task_id)
            reported.add(key)
            if report.framework_id in removed:
                removed.discard(report.framework_id)  # told once, however many tasks it reports
                shut_down.add(report.framework_id)
                self.counters["shutdown_framework_resent"] += 1
                out.append(Send(peer, am.ShutdownFramework(report.framework_id)))
                out.append(Log("warning", "tasks_of_removed_framework", {
                    "agent_id": agent_id, "framework_id": report.framework_id, "action": "shutting it down"}))
                continue
            if report.framework_id in shut_down:
                continue
            if report.state.is_terminal:
                self._ended_on_agent(agent, report, frameworks, now)
                continue
            known = agent.tasks.get(key)
            if known is not None:
                if known.state == TaskState.UNREACHABLE:
                    known.state = report.state
                    known.record(report.state, now)
                    framework = self.frameworks.get(report.framework_id)
                    if framework is not None and framework.peer is not None:
                        out.append(self._update_to(framework, known.task_id, agent_id, report.state, reason, why, now))
                continue
            resources, _ = task_resources(report.task)
            framework = self.frameworks.get(report.framework_id)
            if framework is None:
                framework = self._placeholder_framework(report.framework_id, frameworks, now)
            role = framework.info.roles[0] if framework.info.roles else "*"
            task = TaskRecord(report.framework_id, agent_id, report.task, resources or EMPTY, role, report.state)
            task.launched_at = now
            previous = framework.tasks.get(task.task_id)
            framework.tasks[task.task_id] = task
            if previous is not None and previous.state == TaskState.UNREACHABLE and framework.peer is not None:
                # Mesos partition awareness: the task is back, with the state its agent reports.
                out.append(self._update_to(framework, task.task_id, agent_id, report.state, reason, why, now))
            elif previous is None and not framework.partition_aware and any(
                    t.task_id == task.task_id and t.agent_id == agent_id and t.state == TaskState.LOST
                    for t in framework.completed):
                # Mesos: the framework was told LOST and has likely replaced the task; a framework
                # that is not partition aware cannot take it back, so it is killed (its KILLED
                # update follows the LOST one).
                out.append(Send(peer, am.KillTask(report.framework_id, task.task_id)))
                out.append(Log("info", "task_killed_after_partition", {"task_id": task.task_id, "agent_id": agent_id}))
            self._hold_on_agent(agent, key, task, out)
        return reported

    def _hold_on_agent(self, agent: AgentRecord, key: tuple[str, str], task: TaskRecord, out: list[Effect]) -> None:
        """The task is on the agent again, holding its resources there — unless they no longer
        fit (the agent came back smaller, or holds tasks the master thought ended): then it is
        held without resources, counted, and its end returns nothing. A chaos run overcommitted
        an agent this way and the handler raised half-way, leaving tasks UNREACHABLE for good."""
        agent.tasks[key] = task
        if not task.resources:
            return
        if self.allocator.available(agent.agent_id).contains(task.resources):
            self.allocator.allocate_used(agent.agent_id, task.framework_id, task.role, task.resources)
            return
        self.counters["tasks_held_without_resources"] += 1
        out.append(Log("warning", "task_held_without_resources", {
            "agent_id": agent.agent_id, "framework_id": key[0], "task_id": key[1], "resources": str(task.resources),
            "available": str(self.allocator.available(agent.agent_id))}))
        task.resources = EMPTY

    # --- the end of the re-registration window --------------------------------------------

    def _recover_partitions(self, recovered: Recovered, now: float, out: list[Effect]) -> None:
        self._recovered_count = len(recovered.agents)
        self.gone = dict(recovered.gone)
        for agent_id, unreachable in recovered.unreachable.items():
            self.unreachable[agent_id] = unreachable
            out.append(ScheduleTimer(max(now, unreachable.since + self.config.agent_gone_timeout),
                                     (GONE_TIMER, agent_id)))

    def _reregister_window_closed(self, now: float, out: list[Effect]) -> None:
        """Mesos: agents the registry knew that did not re-register within
        ``agent_reregister_timeout`` of a failover are marked unreachable (at the removal rate).
        If more than ``recovery_agent_removal_limit`` percent of them are missing, the master
        exits instead: so many silent agents more likely means this master is cut off, and
        removing them would tell every framework its tasks are unreachable."""
        missing = sorted(self.recovered_agents)
        if not missing:
            return
        share = 100.0 * len(missing) / max(1, self._recovered_count, len(missing))
        if share > self.config.recovery_agent_removal_limit:
            out.append(Abort(
                f"{len(missing)} of the {self._recovered_count} agents in the registry ({share:.0f}%) did not "
                f"re-register within {self.config.agent_reregister_timeout:g} s of this master starting, more than "
                f"--recovery-agent-removal-limit ({self.config.recovery_agent_removal_limit:g}%) allows; exiting "
                "rather than marking them unreachable. Check that those agents are running and can reach the "
                "master, then restart it; to remove them anyway, raise --recovery-agent-removal-limit."))
            return
        for agent_id in missing:
            self._removals.setdefault(agent_id, now)
            self.counters["agent_unreachable_scheduled"] += 1
        self._remove_due(now, out)

    # --- reconciliation -------------------------------------------------------------------

    def _on_Reconcile(self, peer: bytes, msg: sm.Reconcile, now: float, out: list[Effect]) -> None:
        """Mesos reconciliation. Implicit (no ids): the state of every task the master knows
        (unreachable ones included). Explicit: each id's known state; for an unknown one, no
        answer while its agent (or, without an agent id, any agent) may still re-register after
        a failover — the framework asks again later; otherwise UNREACHABLE or GONE when its agent
        is, else UNKNOWN (LOST for frameworks that are not PARTITION_AWARE, for all three)."""
        framework = self._framework_for(peer, msg.framework_id, out)
        if framework is None:
            return
        if not msg.tasks:
            for task in framework.tasks.values():
                out.append(Send(peer, sm.Update(_known(task, now))))
            return
        completed = {task.task_id: task for task in framework.completed}
        for wanted in msg.tasks:
            task = framework.tasks.get(wanted.task_id) or completed.get(wanted.task_id)
            agent_id = wanted.agent_id
            if task is not None:
                out.append(Send(peer, sm.Update(_known(task, now))))
                continue
            if (agent_id in self.recovered_agents) if agent_id else bool(self.recovered_agents):
                self.counters["reconciliations_deferred"] += 1
                continue
            if agent_id is not None and agent_id in self.unreachable:
                state, message = TaskState.UNREACHABLE, f"task unknown to the master; agent {agent_id} is unreachable"
            elif agent_id is not None and agent_id in self.gone:
                state, message = TaskState.GONE, f"task unknown to the master; agent {agent_id} is gone"
            else:
                state, message = TaskState.UNKNOWN, "task unknown to the master"
            if not framework.partition_aware:
                state = TaskState.LOST
            out.append(Send(peer, sm.Update(TaskStatus(
                task_id=wanted.task_id, state=state, source=TaskSource.MASTER, reason=TaskReason.RECONCILIATION,
                agent_id=agent_id, timestamp=now, message=message))))

    # --- fencing ------------------------------------------------------------------------

    def _from_an_older_incarnation(self, event: Received, out: list[Effect]) -> bool:
        """Fencing (DESIGN §6): a re-registration queued by an agent process that has since been
        replaced (ZeroMQ delivers what a dead process's socket had queued) must not take the
        agent's route back to a dead connection. Incarnations start with the process's start
        time, so they order; an older one is dropped and counted."""
        self._incarnation = event.incarnation
        if not isinstance(event.body, am.ReregisterAgent) or event.incarnation is None:
            return False
        agent = self.agents.get(event.body.agent_info.id or "")
        if agent is None or agent.incarnation is None or event.incarnation >= agent.incarnation:
            return False
        self.counters["stale_incarnation_messages"] += 1
        out.append(Log("warning", "stale_incarnation_dropped", {
            "agent_id": agent.agent_id, "incarnation": event.incarnation, "current": agent.incarnation}))
        return True


def _known(task: TaskRecord, now: float) -> TaskStatus:
    return TaskStatus(task_id=task.task_id, state=task.state, source=TaskSource.MASTER,
                      reason=TaskReason.RECONCILIATION, agent_id=task.agent_id, timestamp=now,
                      exit_code=task.status.exit_code if task.status else None)
