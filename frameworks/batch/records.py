"""What the batch framework keeps of a job: the records of its write-ahead store and of
``tepui jobs history`` (Slurm's ``sacct``).

Why three records and why these fields: a restarted framework rebuilds every :class:`JobRun`
from nothing but its spec, its :class:`JobRecord` and its :class:`AttemptRecord`\\ s
(:meth:`JobRun.from_records`), so an attempt is written *before* its launch is sent (a crash in
between leaves a record of a task the master does not know: reconciliation answers
``TASK_UNKNOWN`` and the attempt is retried free, never a task the framework does not know), and
again when it changes state. The raw Mesos state and reason are kept beside the framework's
reading of them (``failure``, ``outcome``), so the replay reaches the same decisions and the
history shows what the agent said. :class:`StageRecord` is derived (a view for ``jobs show`` and
the history), never read back.

Attempts are numbered per index from 1, counting every try (free ones too), so the history lists
each try once; ``spent`` says whether it used one of ``retries.attempts``.
"""

from __future__ import annotations

import msgspec

__all__ = ["AttemptRecord", "JobRecord", "StageRecord", "LIVE_ATTEMPT_STATES"]

#: Attempt states in which the task may still be running on an agent.
LIVE_ATTEMPT_STATES = frozenset({"LAUNCHED", "RUNNING", "UNREACHABLE"})


class JobRecord(msgspec.Struct, kw_only=True):
    """One job. ``clock_at`` starts the deadline: submission, then each resume and each
    ``retry`` (Kubernetes resets a Job's ``startTime`` on resume). ``retried_at`` lists the times
    of ``tepui jobs retry`` and ``retried_seq`` their places in the job's event sequence, so a
    replay re-opens the failed indices at the same point."""

    id: str
    name: str
    user: str | None = None
    queue: str = "default"
    priority: int = 0
    state: str = "PENDING"  # PENDING RUNNING SUCCEEDED FAILED CANCELLED DEADLINE_EXCEEDED SUSPENDED
    submitted_at: float = 0.0
    clock_at: float = 0.0
    started_at: float | None = None  # first launch
    finished_at: float | None = None
    suspended: bool = False
    reason: str = ""
    retried_at: list[float] = []
    retried_seq: list[int] = []


class StageRecord(msgspec.Struct, kw_only=True):
    """One stage's state and counts, for ``tepui jobs show`` and the history."""

    job: str
    stage: str
    state: str  # WAITING ACTIVE SUCCEEDED FAILED UPSTREAM_FAILED
    pending: int
    queued: int
    running: int
    succeeded: int
    failed: int
    skipped: int
    reason: str = ""


class AttemptRecord(msgspec.Struct, kw_only=True):
    """One try of one task index: its task, agent, times, exit code and what came of it.

    ``state``: LAUNCHED, RUNNING, UNREACHABLE (live) or FINISHED, FAILED, KILLED, LOST (ended).
    ``task_state``/``task_reason``: the last Mesos ``TaskState``/``TaskReason`` values.
    ``failure``: the reason a retry rule sees (``timeout``, ``memory_limit``, ``agent_lost``...).
    ``killed_by``: why the framework asked for a kill (timeout, gang, suspend, cancel, deadline,
    stage_failed), None when it did not. ``outcome``: succeeded, retry, index_failed,
    stage_failed, lost (retried free), gang (a gang sibling's failure), suspended, cancelled,
    deadline, or "" while live. ``*_seq``: the place of each change in the job's event sequence
    (times tie when a batch of updates shares one ``now``; the replay needs the real order)."""

    job: str
    stage: str
    index: int
    attempt: int
    task_id: str
    agent_id: str | None = None
    state: str = "LAUNCHED"
    queued_at: float | None = None
    launched_at: float = 0.0
    running_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    task_state: str | None = None
    task_reason: str | None = None
    failure: str | None = None
    killed_by: str | None = None
    outcome: str = ""
    spent: bool = False
    retry_at: float | None = None
    launched_seq: int = 0
    running_seq: int | None = None
    finished_seq: int | None = None
