"""Checkpointing and recovery, the agent core's side (pure).

Checkpointing: the core notes what changed while it handles an event (``CheckpointJournal``,
``journal.py``) and, at the end of ``handle``, puts one :class:`~tepui.agent.checkpointing.checkpoint.Checkpoint` effect *first* in the
batch, so the shell records a task before launching it and an update before forwarding it.

Recovery (Mesos agent recovery, ``--recover=reconnect``): a restarted agent takes back its id,
its frameworks, its tasks and their unacknowledged updates. Each task that was launched is
*adopted* (``AdoptProcess`` / ``AdoptContainer``): the shell watches the supervisor or container
that survived the agent and reports its real end as an ordinary ``TaskExited``, so a task that
ended while the agent was down gets its real terminal state. Custom executors reconnect on
their own, with the secret their checkpoint keeps (``executors.py``); one that has not
re-subscribed within ``executor_reregister_timeout`` is shut down.
Then the agent re-registers under its id, reporting what it runs.

:func:`recover` takes the checkpoint back into the components it is given (the checkpoint's
writing is ``journal.py``'s); the adoption effects are in ``events.py``, re-exported here.
"""

from __future__ import annotations

from tepui.agent.checkpointing.checkpoint import AgentCheckpoint, Recovered
from tepui.agent.events import (
    AdoptContainer,
    AdoptProcess,
    AgentEffect,
    ExecutorRegisterTimeout,
    KillEscalation,
    SendToMaster,
    SignalProcess,
)
from tepui.agent.custom_executors.executors import EXECUTOR_PREFIX, ExecutorRecord, Executors
from tepui.agent.frameworks import Frameworks
from tepui.agent.checkpointing.journal import task_kind
from tepui.agent.link.registration import Registration
from tepui.agent.updates.status_updates import StatusUpdateQueue
from tepui.agent.lifecycle.task_ends import TaskEnds
from tepui.agent.health_checks.task_health import TaskHealth
from tepui.agent.tasks import TaskRecord, TaskTable
from tepui.sdk.effects import Log, ScheduleTimer
from tepui.sdk.protocol.values import TaskReason, TaskState
from tepui.sdk.resources import Resources

__all__ = ["AdoptContainer", "AdoptProcess", "task_kind", "recover", "reconfiguration_problem",
           "RECONFIGURATION_POLICIES"]


def recover(recovered: Recovered, now: float, *, registration: Registration, frameworks: Frameworks,
            tasks: TaskTable, updates: StatusUpdateQueue[SendToMaster], executors: Executors, ends: TaskEnds,
            health: TaskHealth, executor_reregister_timeout: float) -> list[AgentEffect]:
    """Before ``Start``: takes back what the checkpoint holds. The caller has already
    checked that it belongs to this boot and this configuration."""
    out: list[AgentEffect] = []
    assert recovered.agent is not None
    registration.agent_id = recovered.agent.agent_id
    frameworks.restore(recovered.agent.frameworks)
    adopted = 0
    for saved in recovered.tasks:
        key = (saved.framework_id, saved.info.task_id)
        record = TaskRecord(saved.framework_id, saved.info, saved.sandbox, state=saved.state,
                            kill_requested=saved.kill_requested, kill_grace=saved.kill_grace,
                            exit_code=saved.exit_code, environment=dict(saved.environment),
                            gpus=tuple(saved.gpus), group=saved.group, kill_reason=saved.kill_reason)
        if saved.updates:
            updates.restore(key, saved.updates)
        if saved.terminal:
            record.exited = True
            tasks.completed.append(record)
            continue
        tasks.add(record)
        if saved.kind == "executor":
            continue  # its executor re-subscribes and reports it
        if not saved.launched:
            record.exited = True
            ends.terminal(record, TaskState.FAILED, TaskReason.AGENT_RESTARTED,
                          "the agent restarted before the task was launched (while fetching its URIs)", now, out)
            continue
        record.pid = 0  # launched: signals go through the adopted supervisor or container
        adopted += 1
        if saved.kind == "docker":
            out.append(AdoptContainer(saved.framework_id, saved.info.task_id, saved.sandbox))
        else:
            out.append(AdoptProcess(saved.framework_id, saved.info.task_id, saved.group))
        if record.kill_requested:  # a kill was under way: finish it
            out.append(SignalProcess(record.framework_id, record.info.task_id, "TERM"))
            out.append(ScheduleTimer(now + record.kill_grace, KillEscalation(*key)))
        elif record.state == TaskState.RUNNING and record.info.health_check is not None:
            health.started(record, now, out)
    for saved_executor in recovered.executors:
        executor = ExecutorRecord(saved_executor.framework_id, saved_executor.info, saved_executor.sandbox,
                                  tasks=set(saved_executor.tasks), shutting_down=saved_executor.shutting_down,
                                  secret=saved_executor.secret)
        executors.restore(executor)
        out.append(AdoptProcess(saved_executor.framework_id, EXECUTOR_PREFIX + saved_executor.info.executor_id))
        out.append(ScheduleTimer(now + executor_reregister_timeout, ExecutorRegisterTimeout(*executor.key)))
    out.append(Log("info", "agent_recovered", {
        "agent_id": registration.agent_id, "tasks": len(tasks), "adopted": adopted,
        "executors": len(recovered.executors), "unacknowledged_updates": sum(len(p.queue) for p in updates.values()),
        "discarded": len(recovered.discarded)}))
    return out


RECONFIGURATION_POLICIES = ("equal", "additive")


def reconfiguration_problem(saved: AgentCheckpoint, hostname: str, resources: Resources,
                            attributes: dict[str, str], policy: str, checkpoint_dir: str) -> str | None:
    """Why a restarted agent may not take back its checkpoint, or None (Mesos
    ``--reconfiguration_policy``: ``equal``, the default, wants exactly what was offered before;
    ``additive`` lets resources and attributes grow but never shrink or change)."""
    before = Resources.from_wire(saved.resources)
    problems = []
    if saved.hostname != hostname:
        problems.append(f"its hostname changed from {saved.hostname!r} to {hostname!r}")
    if policy == "equal":
        if before != resources:
            problems.append(f"its resources changed from {before} to {resources}")
        if dict(saved.attributes) != dict(attributes):
            problems.append(f"its attributes changed from {_attrs(saved.attributes)} to {_attrs(attributes)}")
    else:
        if not resources.contains(before):
            problems.append(f"its resources shrank from {before} to {resources} (missing {before.missing_from(resources)})")
        changed = {k: v for k, v in saved.attributes.items() if attributes.get(k) != v}
        if changed:
            problems.append(f"attributes {_attrs(changed)} were removed or changed (now {_attrs(attributes)})")
    if not problems:
        return None
    return (f"this agent's configuration differs from its checkpoint: {'; '.join(problems)}. Its running tasks and "
            f"the master's reservations were granted against the old one, so --reconfiguration-policy {policy} refuses "
            f"it. Restore the previous flags (--hostname, --resources, --attributes)"
            + (", or use --reconfiguration-policy additive to let resources and attributes grow" if policy == "equal" else "")
            + f", or move {checkpoint_dir} away to start as a new agent (its tasks are then lost to it).")


def _attrs(attributes: dict[str, str]) -> str:
    return ";".join(f"{k}:{v}" for k, v in sorted(attributes.items())) or "(none)"
