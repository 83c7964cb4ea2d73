"""Rebuilding a :class:`~tepui.frameworks.batch.job_run.JobRun` after a restart, from the
write-ahead store alone (its :class:`JobRecord` and :class:`AttemptRecord`\\ s).

Why a replay rather than loading counters: the attempts are the facts (launched, running, ended
with this state, exit code and reason, killed for this rule); replaying them in time order
through the same rules gives back the same retry times, spent budgets, stage states and gang
decisions, with no second copy of the rules to drift. Events are replayed in the run's own
sequence (``*_seq``; times tie when updates share one ``now``); ``tepui jobs retry`` is replayed
at its place (``JobRecord.retried_seq``). Live attempts stay live: the core then reconciles them, and an
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

def rebuild(cls: type[JobRun], spec: JobSpec, job: JobRecord, attempts: Iterable[AttemptRecord]) -> JobRun:
    stored = list(attempts)
    final = msgspec.structs.replace(job, retried_at=list(job.retried_at), retried_seq=list(job.retried_seq))
    run = cls(spec, JobRecord(id=job.id, name=job.name, user=job.user, queue=job.queue, priority=job.priority,
                              submitted_at=job.submitted_at, clock_at=job.submitted_at))
    events: list[tuple[int, int, float]] = [(seq, -1, at) for seq, at in zip(final.retried_seq, final.retried_at)]
    for n, rec in enumerate(stored):
        events.append((rec.launched_seq, n, rec.launched_at))
        if rec.running_seq is not None and rec.running_at is not None:
            events.append((rec.running_seq, n, rec.running_at))
        if rec.state not in LIVE_ATTEMPT_STATES and rec.finished_seq is not None and rec.finished_at is not None:
            events.append((rec.finished_seq, n, rec.finished_at))
    for seq, n, at in sorted(events):
        if n < 0:
            if run.job.state not in ("FAILED", "DEADLINE_EXCEEDED"):
                run.job.state = "FAILED"  # the deadline's end is not replayed (the stored job has it)
            run.retry_failed(at)
            continue
        rec = stored[n]
        if seq == rec.launched_seq:
            st = run.stages[rec.stage]
            if st.status[rec.index] != S.LIVE:  # a later try supersedes what the replay inferred
                st.set(rec.index, S.QUEUED)
            st.tries[rec.index] = rec.attempt
            if rec.queued_at is not None:
                run._queued_at[(rec.stage, rec.index)] = rec.queued_at  # noqa: SLF001  # the run's own restore path
            run.launched(rec.stage, rec.index, rec.attempt, rec.task_id, rec.agent_id, at)
            run._live[rec.task_id].killing = rec.killed_by  # noqa: SLF001
        elif seq == rec.running_seq:
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
    run.seq = max((e[0] for e in events), default=0)
    return run
