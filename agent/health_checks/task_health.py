"""Health checks of running tasks, the core's side (pure): when to probe, and what a probe's
result does to the task (a status update with ``healthy``, or a kill). The judgement itself is
:func:`tepui.agent.health_checks.health.judge`; the probes run in the shell (``health_probes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tepui.agent.events import AgentEffect, HealthCheckResult, HealthProbe, RunHealthCheck
from tepui.agent.health_checks.health import HealthState, first_probe_at, judge
from tepui.agent.checkpointing.journal import CheckpointJournal
from tepui.agent.updates.reporting import StatusReporter
from tepui.agent.lifecycle.stopping import signal
from tepui.agent.tasks import TaskRecord, TaskTable, task_user
from tepui.sdk.effects import Log, ScheduleTimer
from tepui.sdk.protocol.values import TaskReason, TaskState


@dataclass(eq=False)
class TaskHealth:
    tasks: TaskTable
    reporter: StatusReporter
    journal: CheckpointJournal
    default_user: str | None

    def started(self, record: TaskRecord, now: float, out: list[AgentEffect]) -> None:
        """The task is RUNNING (or was taken back running after a restart): probes begin."""
        check = record.info.health_check
        if check is not None:
            record.health = HealthState(started_at=now)
            out.append(ScheduleTimer(first_probe_at(check, now), HealthProbe(*record.key)))

    def probe(self, key: HealthProbe, now: float, out: list[AgentEffect]) -> None:
        record = self.tasks.get((key.framework_id, key.task_id))
        check = record.info.health_check if record is not None else None
        if record is not None and check is not None and record.state == TaskState.RUNNING \
                and not record.kill_requested:
            out.append(RunHealthCheck(record.framework_id, record.info.task_id, check, record.sandbox,
                                      record.environment, task_user(record.info, self.default_user)))

    def result(self, event: HealthCheckResult, now: float, out: list[AgentEffect]) -> None:
        record = self.tasks.get((event.framework_id, event.task_id))
        check = record.info.health_check if record is not None else None
        if record is None or check is None or record.health is None or record.kill_requested or record.exited:
            return
        verdict = judge(record.health, check, event.ok, event.detail, now)
        if verdict.report is not None:
            self.reporter.report(record, TaskState.RUNNING, TaskReason.TASK_HEALTH_CHECK_STATUS_UPDATED,
                                  verdict.message, now, out, healthy=verdict.report)
        if verdict.kill:
            record.unhealthy = verdict.message
            record.kill_requested = True
            self.journal.touch(record.key)
            out.append(Log("warning", "task_unhealthy", {"task_id": event.task_id, "message": verdict.message}))
            signal(record, now, out)
        else:
            out.append(ScheduleTimer(now + max(0.1, check.interval_seconds), HealthProbe(*record.key)))
