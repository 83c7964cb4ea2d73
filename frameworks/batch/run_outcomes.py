"""What a :class:`~tepui.frameworks.batch.job_run.JobRun` tells the batch core. Frozen values in
one union, as :mod:`tepui.frameworks.services.effects`: the core persists the ``Save*`` values
first (write-ahead), then acts on the rest in order (kills to the master, ``Unqueue`` to the
queue, events to the stream)."""

from __future__ import annotations

from dataclasses import dataclass

from tepui.frameworks.batch.records import AttemptRecord, JobRecord, StageRecord


@dataclass(frozen=True)
class Ready:
    """Task ``index`` of ``stage`` may be queued now as try number ``attempt``."""

    stage: str
    index: int
    attempt: int


@dataclass(frozen=True)
class ReadySet:
    """The answer of ``ready(now)``: what may be queued, and when to ask again (a retry's backoff
    ends) — None when only a status update can make more ready. A gang stage's tasks are all in
    ``tasks`` or none are; ``gangs`` names the stages whose tasks must be placed all-or-nothing."""

    tasks: tuple[Ready, ...]
    next_at: float | None
    gangs: tuple[str, ...] = ()


@dataclass(frozen=True)
class SaveJob:
    record: JobRecord


@dataclass(frozen=True)
class SaveStage:
    record: StageRecord


@dataclass(frozen=True)
class SaveAttempt:
    record: AttemptRecord


@dataclass(frozen=True)
class IndexSucceeded:
    """Recorded exactly once per index (a repeated terminal update yields :class:`Ignored`)."""

    stage: str
    index: int


@dataclass(frozen=True)
class RetryAt:
    """The index will be ready again at ``at`` as try ``attempt``; ``spent``: the failed try
    used one of ``retries.attempts`` (False for agent loss, ``ignore`` rules, suspension)."""

    stage: str
    index: int
    attempt: int
    at: float
    spent: bool
    reason: str


@dataclass(frozen=True)
class IndexFailed:
    stage: str
    index: int
    reason: str


@dataclass(frozen=True)
class StageEnded:
    stage: str
    state: str  # SUCCEEDED | FAILED | UPSTREAM_FAILED
    reason: str


@dataclass(frozen=True)
class KillTask:
    """Ask the master to kill a task; ``why`` says which rule (``timeout: 60 s since RUNNING``,
    ``gang: index 3 failed``, ``deadline``, ``cancel``, ``suspend``, ``stale``...)."""

    task_id: str
    agent_id: str | None
    why: str


@dataclass(frozen=True)
class Unqueue:
    """The queue must drop this queued (not launched) task: the job was suspended, cancelled, or
    its stage failed."""

    stage: str
    index: int
    attempt: int


@dataclass(frozen=True)
class JobEnded:
    state: str  # SUCCEEDED | FAILED | CANCELLED | DEADLINE_EXCEEDED
    reason: str


@dataclass(frozen=True)
class Ignored:
    """A status update that changes nothing (a duplicate terminal update after reconciliation,
    a task already ended): said so the shell can acknowledge it and the tests can see it."""

    task_id: str
    why: str


@dataclass(frozen=True)
class Tick:
    """The answer of ``timeouts(now)``: what to do, and the next time to call it."""

    outcomes: tuple[Outcome, ...]
    next_at: float | None


Outcome = (
    SaveJob | SaveStage | SaveAttempt | IndexSucceeded | RetryAt | IndexFailed | StageEnded | KillTask | Unqueue
    | JobEnded | Ignored
)
