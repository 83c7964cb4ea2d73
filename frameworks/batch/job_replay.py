"""Rebuilding a :class:`~tepui.frameworks.batch.job_run.JobRun` after a restart, from the
write-ahead store alone (its :class:`JobRecord` and :class:`AttemptRecord`\\ s).

Why a replay rather than loading counters: the attempts are the facts (launched, running, ended
with this state, exit code and reason, killed for this rule); replaying them in time order
through the same rules gives back the same retry times, spent budgets, stage states and gang
decisions, with no second copy of the rules to drift. ``tepui jobs retry`` is replayed at its
time (``JobRecord.retried_at``). Live attempts stay live: the core then reconciles them, and an
attempt the master does not know ends ``TASK_LOST``/``TASK_UNKNOWN`` — lost, retried free — so no
index runs twice and no success is recorded twice (a ``TASK_FINISHED`` for an attempt already
recorded as ended is ignored). Queued-only tasks were never stored: their indices are ready again.
A kill asked before the restart is asked again at the first ``timeouts``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from tepui.frameworks.batch import stage_run as S
from tepui.frameworks.batch.records import LIVE_ATTEMPT_STATES, AttemptRecord, JobRecord
from tepui.frameworks.batch.spec import JobSpec
from tepui.sdk import TaskReason, TaskState

if TYPE_CHECKING:
    from tepui.frameworks.batch.job_run import JobRun

__all__ = ["rebuild"]

_RETRY, _LAUNCH, _RUNNING, _END = range(4)  # event kinds, in the order they apply at one instant


def rebuild(cls: type[JobRun], spec: JobSpec, job: JobRecord, attempts: Iterable[AttemptRecord]) -> JobRun:
    stored = list(attempts)
    final = msgspec.structs.replace(job, retried_at=list(job.retried_at))
    run = cls(spec, JobRecord(id=job.id, name=job.name, user=job.user, queue=job.queue, priority=job.priority,
                              submitted_at=job.submitted_at, clock_at=job.submitted_at))
    events: list[tuple[float, int, int]] = [(t, _RETRY, -1) for t in final.retried_at]
    for n, rec in enumerate(stored):
        events.append((rec.launched_at, _LAUNCH, n))
        if rec.running_at is not None:
            events.append((rec.running_at, _RUNNING, n))
        if rec.state not in LIVE_ATTEMPT_STATES and rec.finished_at is not None:
            events.append((rec.finished_at, _END, n))
    for at, kind, n in sorted(events):
        if kind == _RETRY:
            if run.job.state not in ("FAILED", "DEADLINE_EXCEEDED"):
                run.job.state = "FAILED"  # the replay reached the retry before the deadline's record did
            run.retry_failed(at)
            continue
        rec = stored[n]
        if kind == _LAUNCH:
            st = run.stages[rec.stage]
            if st.status[rec.index] in (S.PENDING, S.BACKOFF):
                st.set(rec.index, S.QUEUED)
            st.tries[rec.index] = rec.attempt
            if rec.queued_at is not None:
                run._queued_at[(rec.stage, rec.index)] = rec.queued_at  # noqa: SLF001  # the run's own restore path
            run.launched(rec.stage, rec.index, rec.attempt, rec.task_id, rec.agent_id, at)
            run._live[rec.task_id].killing = rec.killed_by  # noqa: SLF001
        elif kind == _RUNNING:
            run.status(rec.task_id, TaskState.RUNNING, None, None, at)
        else:
            reason = None if rec.task_reason is None else TaskReason(rec.task_reason)
            state = TaskState(rec.task_state) if rec.task_state else TaskState.FAILED
            run.status(rec.task_id, state, rec.exit_code, reason, at)
    for rec in stored:  # the stored records become the live ones again (the store's objects)
        restored = run._live.get(rec.task_id)  # noqa: SLF001
        if restored is not None:
            restored.record = rec
    run.job = final
    return run
