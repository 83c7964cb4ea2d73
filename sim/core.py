"""The simulator's pure core: every simulated agent's state machine, in one object.

``SimCore.handle(event, now)`` returns effects (send on agent i's connection, timers, rare
logs), as the real agent's core does (DESIGN §2); the shell (:mod:`tepui.sim.shell`) owns the
sockets. One core for all agents rather than one per agent, because at 10,000 agents the cost
that matters is per message: an event names its agent by index and reaches it in O(1), and no
handler scans more than the one agent's own tasks.

What a simulated agent does, and why it matches the real one (``tepui.agent``) on the wire:

* registration: REGISTER_AGENT with its own hostname, resources and attributes, retried with
  doubling backoff until AGENT_REGISTERED; after it has an id, REREGISTER_AGENT with every task
  it holds (live, or ended with its final update not acknowledged yet), as the real agent does
  after a master failover. A master silent for 5 ping intervals (the real agent's rule) makes
  it re-register; one sweep over all agents per half limit checks that, instead of one timer
  per agent.
* pings: PONG with the same ``seq``, while registered.
* tasks run without processes: RUN_TASK → TASK_RUNNING at once, then TASK_FINISHED after the
  task's duration (:func:`tepui.sim.events.task_duration`); KILL_TASK → TASK_KILLING (for
  frameworks with that capability) then TASK_KILLED at once; duplicate task ids are refused
  (at most once per task id, DESIGN §6). Task groups run the same way; SHUTDOWN_EXECUTOR ends
  the group's tasks TASK_KILLED.
* status updates (Mesos ``TaskStatusUpdateManager``): each carries a fresh UUID; one in flight
  per task, retried with doubling backoff until the ack with its UUID arrives; the next goes out
  only after that ack; stale acks change nothing. Each simulated agent has the real agent's own
  :class:`~tepui.agent.updates.status_updates.StatusUpdateQueue`, naming its effects with its index.
* SHUTDOWN_FRAMEWORK drops that framework's tasks and unacknowledged updates silently (nobody is
  left to acknowledge); RECONCILE_TASKS answers TASK_DROPPED (TASK_LOST for frameworks that are
  not PARTITION_AWARE) for ids it never saw, like ``agent/link/reconcile.py``; SHUTDOWN_AGENT ends
  the agent's tasks, waits (at most ``stop_grace``) for their acks, unregisters and closes.

Events, effects and timer keys are typed (:mod:`tepui.sim.events`: ``SimEvent``, ``SimEffect``,
``SimTimer``); messages and timers reach their handlers through dispatch tables keyed by type.

Nothing here logs per message: rare events are logged the first time and counted always
(``stats``), so that 10,000 agents that all see the same thing produce one line.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, TypeVar

from tepui.agent.updates.status_updates import Ack, StatusUpdateQueue
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo, TaskInfo, TaskReason, TaskSource, TaskState, TaskStatus
from tepui.sim.agents import Key, SimAgent, SimTask
from tepui.sim.events import (
    DURATION_LABEL,
    CloseAgent,
    FinishTask,
    MasterChanged,
    MasterCheck,
    Received,
    Register,
    RetryUpdate,
    SendToMaster,
    SimConfig,
    SimEffect,
    SimEvent,
    Start,
    Stop,
    StopDeadline,
    expand_template,
    parse_attributes,
    task_duration,
)

Effect = SimEffect
MASTER_CHECK = MasterCheck()
MISSED_PINGS = 5  # the real agent's rule: silent for this many ping intervals → the master is gone


MessageHandler = Callable[[SimAgent, Any, int, float, list[Effect]], None]
TimerHandler = Callable[[Any, float, list[Effect]], None]
M = TypeVar("M")


def on_message(table: dict[type, MessageHandler], kind: type[M],
               handler: Callable[[SimAgent, M, int, float, list[Effect]], None]) -> None:
    table[kind] = handler


def on_timer(table: dict[type, TimerHandler], kind: type[M], handler: Callable[[M, float, list[Effect]], None]) -> None:
    table[kind] = handler


class SimCore:
    def __init__(self, config: SimConfig, new_uuid: Callable[[], bytes]) -> None:
        self.config = config
        self._new_uuid = new_uuid
        self._resources = config.resources.to_wire()  # shared by every agent: values are immutable
        self.agents = [
            SimAgent(i, config.hostname(i), parse_attributes(expand_template(config.attributes, i + 1)),
                     config.registration_backoff, config.completed_limit,
                     StatusUpdateQueue(config.update_retry_initial, config.update_retry_max, new_uuid,
                                       functools.partial(SendToMaster, i), functools.partial(RetryUpdate, i)))
            for i in range(config.agents)
        ]
        self.frameworks: dict[str, FrameworkInfo] = {}  # the latest info seen per framework, all agents
        self.ping_interval = 15.0  # announced by the master at registration
        self.registered = 0  # agents registered right now
        self.running = 0  # live tasks, all agents
        self.stats: collections.Counter[str] = collections.Counter()
        self._checking = False
        # Dispatch tables, each handler checked (by mypy) against the type it is routed.
        self._handlers: dict[type, MessageHandler] = {}  # what the master sends (am.MasterToAgent)
        on_message(self._handlers, am.Ping, self._on_ping)
        on_message(self._handlers, am.StatusUpdateAck, self._on_ack)
        on_message(self._handlers, am.RunTask, self._on_run_task)
        on_message(self._handlers, am.RunTaskGroup, self._on_run_task_group)
        on_message(self._handlers, am.KillTask, self._on_kill_task)
        on_message(self._handlers, am.AgentRegistered, self._on_registered)
        on_message(self._handlers, am.AgentReregistered, self._on_registered)
        on_message(self._handlers, am.ShutdownFramework, self._on_shutdown_framework)
        on_message(self._handlers, am.ShutdownExecutor, self._on_shutdown_executor)
        on_message(self._handlers, am.ReconcileTasks, self._on_reconcile_tasks)
        on_message(self._handlers, am.AuditTasks, self._on_audit_tasks)
        on_message(self._handlers, am.ShutdownAgent, self._on_shutdown_agent)
        self._timers: dict[type, TimerHandler] = {}  # by the key's type (events.SimTimer)
        on_timer(self._timers, RetryUpdate, self._on_retry)
        on_timer(self._timers, FinishTask, self._on_finish)
        on_timer(self._timers, Register, self._on_register_timer)
        on_timer(self._timers, StopDeadline, self._on_stop_deadline)
        on_timer(self._timers, MasterCheck, self._on_master_check)

    # --- entry point ----------------------------------------------------------------------

    def handle(self, event: SimEvent, now: float) -> list[Effect]:
        out: list[Effect] = []
        if isinstance(event, Received):
            agent = self.agents[event.index]
            if agent.closed:
                return out
            if event.epoch < agent.master_epoch:  # a superseded master's: dropped, counted (as the real agent)
                self._note("stale_master_message", {"epoch": event.epoch, "current": agent.master_epoch}, out)
                return out
            agent.master_epoch = event.epoch  # a newer one is adopted on any message, as the real agent does
            agent.last_contact = now
            handler = self._handlers.get(type(event.body))
            if handler is None:  # FRAMEWORK_TO_EXECUTOR, DESTROY_VOLUMES: nothing to simulate
                self.stats["ignored_" + type(event.body).__name__] += 1
            else:
                handler(agent, event.body, event.epoch, now, out)
        elif isinstance(event, TimerFired):
            on_timer = self._timers.get(type(event.key))
            if on_timer is not None:
                on_timer(event.key, now, out)
        elif isinstance(event, Start):
            agent = self.agents[event.index]
            agent.last_contact = now
            if not agent.registered and not agent.closed:
                self._register(agent, now, out)
        elif isinstance(event, Stop):
            self._stop(event, out)
        elif isinstance(event, MasterChanged):
            self._master_changed(event, out)
        else:
            raise TypeError(f"unknown event {event!r}")
        return out

    def _note(self, event: str, fields: dict[str, Any], out: list[Effect], level: str = "warning") -> None:
        """Counts a rare event; logs it only the first time (10,000 agents, one line)."""
        self.stats[event] += 1
        if self.stats[event] == 1:
            out.append(Log(level, event, {**fields, "note": "logged once; counted in the stats line"}))

    # --- registration ---------------------------------------------------------------------

    def _register(self, agent: SimAgent, now: float, out: list[Effect]) -> None:
        info = AgentInfo(hostname=agent.hostname, resources=self._resources, attributes=agent.attributes,
                         id=agent.agent_id)
        if agent.agent_id is None:
            out.append(SendToMaster(agent.index, am.RegisterAgent(info, self.config.version)))
        else:
            reports = agent.reports()
            ids = sorted({r.framework_id for r in reports})
            frameworks = [self.frameworks[fid] for fid in ids if fid in self.frameworks]
            out.append(SendToMaster(agent.index, am.ReregisterAgent(info, self.config.version, reports, frameworks)))
            self.stats["reregistrations_sent"] += 1
        out.append(ScheduleTimer(now + agent.backoff, Register(agent.index)))
        agent.backoff = min(agent.backoff * 2, self.config.max_registration_backoff)

    def _master_changed(self, event: MasterChanged, out: list[Effect]) -> None:
        moving = 0
        for agent in self.agents:
            if agent.closed or agent.stopping:
                continue
            self._unregistered(agent)
            agent.backoff = self.config.registration_backoff
            out.append(CancelTimer(Register(agent.index)))
            moving += 1
        self.stats["master_changes"] += 1
        out.append(Log("info", "master_changed", {"leader": event.leader, "epoch": event.epoch, "agents": moving}))

    def _on_registered(self, agent: SimAgent, msg: am.AgentRegistered | am.AgentReregistered, epoch: int,
                       now: float, out: list[Effect]) -> None:
        agent.agent_id = msg.agent_id
        agent.master_epoch = max(agent.master_epoch, epoch, msg.master_info.epoch)
        self.ping_interval = msg.ping_interval_seconds
        if agent.registered or agent.stopping:
            return
        agent.registered = True
        self.registered += 1
        agent.backoff = self.config.registration_backoff
        out.append(CancelTimer(Register(agent.index)))
        agent.pending.resend_all(now, True, out)  # what the old connection may have lost
        if not self._checking:
            self._checking = True
            out.append(ScheduleTimer(now + self._silence_limit() / 2, MASTER_CHECK))

    def _unregistered(self, agent: SimAgent) -> None:
        if agent.registered:
            agent.registered = False
            self.registered -= 1

    def _silence_limit(self) -> float:
        if self.config.master_silence_limit is not None:
            return self.config.master_silence_limit
        return self.ping_interval * MISSED_PINGS

    def _check_master(self, now: float, out: list[Effect]) -> None:
        """One sweep for all agents: those the master has not spoken to for too long (it died,
        or forgot them) re-register, and the master learns their tasks again."""
        limit = self._silence_limit()
        silent = 0
        for agent in self.agents:
            if agent.registered and not agent.stopping and now - agent.last_contact > limit:
                self._unregistered(agent)
                self._register(agent, now, out)
                silent += 1
        if silent:
            self.stats["master_silent"] += silent
            out.append(Log("warning", "master_silent", {"agents": silent, "seconds": limit,
                                                        "action": "re-registering"}))
        out.append(ScheduleTimer(now + limit / 2, MASTER_CHECK))

    def _on_ping(self, agent: SimAgent, msg: am.Ping, epoch: int, now: float, out: list[Effect]) -> None:
        if msg.interval_seconds is not None and msg.interval_seconds > 0:
            self.ping_interval = msg.interval_seconds  # as the real agent: a growing cluster pings less often
        if agent.registered:
            held = agent.held_for_master()
            out.append(SendToMaster(agent.index, am.Pong(msg.seq, len(held), am.task_set_digest(held))))

    # --- tasks ----------------------------------------------------------------------------

    def _on_run_task(self, agent: SimAgent, msg: am.RunTask, epoch: int, now: float, out: list[Effect]) -> None:
        framework_id = msg.framework_info.id or ""
        self.frameworks[framework_id] = msg.framework_info
        agent.shutting_down.discard(framework_id)
        if agent.known((framework_id, msg.task.task_id)):
            self._note("duplicate_task_refused", {"task_id": msg.task.task_id, "agent": agent.hostname}, out)
            return
        self._launch(agent, framework_id, msg.task, task_duration(msg.task), None, now, out)

    def _on_run_task_group(self, agent: SimAgent, msg: am.RunTaskGroup, epoch: int, now: float,
                           out: list[Effect]) -> None:
        """All of the group or none of it, as the real agent starts a group."""
        framework_id = msg.framework_info.id or ""
        self.frameworks[framework_id] = msg.framework_info
        agent.shutting_down.discard(framework_id)
        tasks = msg.task_group.tasks
        if any(agent.known((framework_id, t.task_id)) for t in tasks):
            self._note("duplicate_task_group_refused", {"executor_id": msg.executor.executor_id}, out)
            return
        group = msg.executor.executor_id
        durations = [task_duration(t) for t in tasks]
        invalid = None in durations
        agent.groups[(framework_id, group)] = [t.task_id for t in tasks]
        for task, duration in zip(tasks, durations):
            self._launch(agent, framework_id, task, None if invalid else duration, group, now, out,
                         reason=TaskReason.TASK_GROUP_INVALID if invalid else TaskReason.TASK_INVALID)

    def _launch(self, agent: SimAgent, framework_id: str, task: TaskInfo, duration: float | None, group: str | None,
                now: float, out: list[Effect], reason: TaskReason = TaskReason.TASK_INVALID) -> None:
        key = (framework_id, task.task_id)
        agent.tasks[key] = SimTask(framework_id, task, TaskState.RUNNING, group)
        self.running += 1
        self.stats["tasks_launched"] += 1
        if duration is None:  # a duration label that is not a number: refused, as an unrunnable task is
            message = f"label {DURATION_LABEL} must be a number of seconds"
            self._terminal(agent, key, TaskState.ERROR, reason, message, now, out, timer=False)
            return
        self._update(agent, key, TaskState.RUNNING, None, None, now, out)
        if duration <= 0:
            self._terminal(agent, key, TaskState.FINISHED, None, "Command exited with status 0", now, out,
                           exit_code=0, timer=False)
        else:
            out.append(ScheduleTimer(now + duration, FinishTask(agent.index, framework_id, task.task_id)))

    def _on_kill_task(self, agent: SimAgent, msg: am.KillTask, epoch: int, now: float, out: list[Effect]) -> None:
        key = (msg.framework_id, msg.task_id)
        if key not in agent.tasks:
            agent.pending.enqueue(msg.framework_id, TaskStatus(
                task_id=msg.task_id, state=TaskState.DROPPED if self._aware(msg.framework_id) else TaskState.LOST,
                message="cannot kill: the agent does not know this task", source=TaskSource.AGENT,
                reason=TaskReason.TASK_UNKNOWN, agent_id=agent.agent_id, timestamp=now), now, agent.registered, out)
            return
        framework = self.frameworks.get(msg.framework_id)
        if framework is not None and "TASK_KILLING_STATE" in framework.capabilities:
            self._update(agent, key, TaskState.KILLING, None, None, now, out)
        self._terminal(agent, key, TaskState.KILLED, None, "Killed on request (a simulated task: no process)", now, out)

    def _aware(self, framework_id: str, info: FrameworkInfo | None = None) -> bool:
        framework = self.frameworks.get(framework_id) or info
        return framework is not None and "PARTITION_AWARE" in framework.capabilities

    def _terminal(self, agent: SimAgent, key: Key, state: TaskState, reason: TaskReason | None, message: str,
                  now: float, out: list[Effect], exit_code: int | None = None, timer: bool = True) -> None:
        record = agent.tasks.pop(key, None)
        if record is None:
            return
        self.running -= 1
        self.stats["tasks_" + state.name.lower()] += 1
        record.state = state
        if timer:
            out.append(CancelTimer(FinishTask(agent.index, *key)))
        if record.group is not None:
            members = agent.groups.get((key[0], record.group))
            if members is not None:
                members.remove(key[1])
                if not members:
                    del agent.groups[(key[0], record.group)]
        if key[0] in agent.shutting_down:
            agent.remember(key)  # the framework is gone; nobody is left to acknowledge
            return
        agent.ended[key] = record
        self._update(agent, key, state, reason, message, now, out, exit_code)

    # --- status updates -------------------------------------------------------------------

    def _update(self, agent: SimAgent, key: Key, state: TaskState, reason: TaskReason | None, message: str | None,
                now: float, out: list[Effect], exit_code: int | None = None) -> None:
        agent.pending.enqueue(key[0], TaskStatus(
            task_id=key[1], state=state, message=message, source=TaskSource.AGENT, reason=reason,
            agent_id=agent.agent_id, timestamp=now, uuid=self._new_uuid(), exit_code=exit_code), now, agent.registered,
            out)

    def _resend(self, agent: SimAgent, key: Key, now: float, out: list[Effect]) -> None:
        """The head again before its retry timer (an audit asked), counted as a retry."""
        self.stats["status_updates_retried"] += 1
        agent.pending.send_head(key, now, agent.registered, out)

    def _on_ack(self, agent: SimAgent, msg: am.StatusUpdateAck, epoch: int, now: float, out: list[Effect]) -> None:
        key = (msg.framework_id, msg.task_id)
        outcome = agent.pending.acknowledge(msg.framework_id, msg.task_id, msg.uuid, now, agent.registered, out)
        if outcome is Ack.STALE:
            self.stats["stale_acks_ignored"] += 1
            return
        if outcome is Ack.NEXT:
            return
        ended = agent.ended.pop(key, None)
        if ended is not None:
            agent.remember(key, ended.state)
        if agent.stopping:
            self._maybe_close(agent, out)

    # --- frameworks, executors, reconciliation ---------------------------------------------

    def _on_shutdown_framework(self, agent: SimAgent, msg: am.ShutdownFramework, epoch: int, now: float,
                               out: list[Effect]) -> None:
        framework_id = msg.framework_id
        agent.shutting_down.add(framework_id)
        agent.pending.drop_framework(framework_id, out)
        for key in [k for k in agent.tasks if k[0] == framework_id]:
            self._terminal(agent, key, TaskState.KILLED, None, "framework shut down", now, out)
        for key in [k for k in agent.ended if k[0] == framework_id]:
            del agent.ended[key]
            agent.remember(key)
        self.stats["frameworks_shut_down"] += 1
        if agent.stopping:
            self._maybe_close(agent, out)

    def _on_shutdown_executor(self, agent: SimAgent, msg: am.ShutdownExecutor, epoch: int, now: float,
                              out: list[Effect]) -> None:
        """Mesos: the executor ends, and its tasks with it."""
        members = agent.groups.get((msg.framework_id, msg.executor_id))
        if members is None:
            self.stats["unknown_executor_shutdowns"] += 1
            return
        for task_id in list(members):
            self._terminal(agent, (msg.framework_id, task_id), TaskState.KILLED, TaskReason.EXECUTOR_TERMINATED,
                           f"its executor {msg.executor_id!r} was shut down", now, out)

    def _on_reconcile_tasks(self, agent: SimAgent, msg: am.ReconcileTasks, epoch: int, now: float,
                            out: list[Effect]) -> None:
        """Ids the master placed here that the agent never saw were lost on the way: answered
        TASK_DROPPED (TASK_LOST when not PARTITION_AWARE), and remembered as ended so a late
        RUN_TASK for them is a refused duplicate (agent/link/reconcile.py)."""
        if msg.framework_id in agent.shutting_down:
            return
        state = TaskState.DROPPED if self._aware(msg.framework_id, msg.framework_info) else TaskState.LOST
        for task_id in msg.task_ids:
            key = (msg.framework_id, task_id)
            if agent.known(key):
                continue
            info = TaskInfo(name=task_id, task_id=task_id, agent_id=agent.agent_id or "", resources=[])
            agent.ended[key] = SimTask(msg.framework_id, info, state)
            self.stats["tasks_reconciled_unknown"] += 1
            agent.pending.enqueue(msg.framework_id, TaskStatus(
                task_id=task_id, state=state, source=TaskSource.AGENT, reason=TaskReason.RECONCILIATION,
                message="Reconciliation: task unknown to the agent (its launch never arrived)",
                agent_id=agent.agent_id, timestamp=now), now, agent.registered, out)

    def _on_audit_tasks(self, agent: SimAgent, msg: am.AuditTasks, epoch: int, now: float, out: list[Effect]) -> None:
        """As the real agent answers an audit (agent/link/reconcile.py): asked tasks' unacknowledged
        updates again now, DROPPED for asked ids never seen, and every task it holds, with the
        end of asked ones that ended with their final update acknowledged."""
        infos = {info.id: info for info in msg.frameworks}
        ended = []
        for framework_id, task_ids in msg.tasks.items():
            if framework_id in agent.shutting_down:
                continue
            for task_id in task_ids:
                key = (framework_id, task_id)
                state = agent.completed.get(key)
                if key in agent.pending:
                    self._resend(agent, key, now, out)
                elif key not in agent.tasks and state is not None:
                    info = TaskInfo(name=task_id, task_id=task_id, agent_id=agent.agent_id or "", resources=[])
                    ended.append(am.TaskReport(framework_id, info, state))
            self._on_reconcile_tasks(agent, am.ReconcileTasks(framework_id, task_ids, infos.get(framework_id)),
                                     epoch, now, out)
        self.stats["task_audits_answered"] += 1
        out.append(SendToMaster(agent.index, am.TaskAudit(msg.seq, agent.reports(), ended)))

    # --- the end of agents ----------------------------------------------------------------

    def _on_shutdown_agent(self, agent: SimAgent, msg: am.ShutdownAgent, epoch: int, now: float,
                           out: list[Effect]) -> None:
        """Like the real agent's drain: its tasks end KILLED, it waits for their acks (at most
        ``stop_grace``), then unregisters and closes its connection."""
        self._note("master_shut_down_agent", {"agent": agent.hostname, "message": msg.message}, out)
        if agent.stopping:
            return
        agent.stopping = True
        out.append(CancelTimer(Register(agent.index)))
        for key in list(agent.tasks):
            self._terminal(agent, key, TaskState.KILLED, None, "agent shut down", now, out)
        out.append(ScheduleTimer(now + self.config.stop_grace, StopDeadline(agent.index)))
        self._maybe_close(agent, out)

    def _maybe_close(self, agent: SimAgent, out: list[Effect], force: bool = False) -> None:
        if agent.closed or (agent.pending and not force):
            return
        if agent.registered and agent.agent_id is not None:
            out.append(SendToMaster(agent.index, am.UnregisterAgent(agent.agent_id)))
        self._unregistered(agent)
        agent.closed = True
        agent.pending.drop_all(out)
        out.append(CancelTimer(StopDeadline(agent.index)))
        out.append(CloseAgent(agent.index))
        self.stats["agents_closed"] += 1

    def _stop(self, event: Stop, out: list[Effect]) -> None:
        for agent in self.agents:
            if agent.closed:
                continue
            if event.unregister and agent.registered and agent.agent_id is not None:
                out.append(SendToMaster(agent.index, am.UnregisterAgent(agent.agent_id)))
                self.stats["agents_unregistered"] += 1
            self._unregistered(agent)
            agent.closed = True

    # --- timers ---------------------------------------------------------------------------

    def _on_retry(self, key: RetryUpdate, now: float, out: list[Effect]) -> None:
        agent = self.agents[key.index]
        task_key = (key.framework_id, key.task_id)
        if task_key in agent.pending and not agent.closed:
            self._resend(agent, task_key, now, out)

    def _on_finish(self, key: FinishTask, now: float, out: list[Effect]) -> None:
        self._terminal(self.agents[key.index], (key.framework_id, key.task_id), TaskState.FINISHED, None,
                       "Command exited with status 0", now, out, exit_code=0, timer=False)

    def _on_register_timer(self, key: Register, now: float, out: list[Effect]) -> None:
        agent = self.agents[key.index]
        if not agent.registered and not agent.stopping and not agent.closed:
            self._register(agent, now, out)

    def _on_stop_deadline(self, key: StopDeadline, now: float, out: list[Effect]) -> None:
        self._maybe_close(self.agents[key.index], out, force=True)

    def _on_master_check(self, key: MasterCheck, now: float, out: list[Effect]) -> None:
        self._check_master(now, out)
