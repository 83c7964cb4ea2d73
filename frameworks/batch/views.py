"""The batch API's read-only values (docs/batch.md "REST API"): the Job and Attempt values, the
jobs list with its filters and pages, the history's selection (Slurm's ``sacct``), the queues.

Pure: the filters take records and return records, so they are tested without a store or an
HTTP server; :mod:`.history` reads the store and :mod:`.api` parses the query into these filters.
Query values are checked here too (a refusal names the parameter and the values it takes), so
``tepui jobs list --state RUNING`` is told the states instead of answering nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from tepui.frameworks.batch.core import BatchCore, JobEntry
from tepui.frameworks.batch.job_run import ENDED
from tepui.frameworks.batch.records import AttemptRecord, JobRecord
from tepui.sdk.framework_effects import CommandError

JOB_STATES = ("PENDING", "RUNNING", "SUSPENDED", "SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED")
ATTEMPT_STATES = ("LAUNCHED", "RUNNING", "UNREACHABLE", "FINISHED", "FAILED", "KILLED", "LOST")
MAX_LIMIT = 10_000  # rows one answer may hold: a history of 100,000 attempts is read in pages of filters


# --- query values --------------------------------------------------------------------------------


def parse_states(text: str | None, known: Sequence[str], name: str = "state") -> frozenset[str]:
    """``"failed,RUNNING"`` → {FAILED, RUNNING}; empty: any state. Unknown states are refused."""
    states = frozenset(s.strip().upper() for s in (text or "").split(",") if s.strip())
    unknown = sorted(states - set(known))
    if unknown:
        raise CommandError(400, "INVALID_FILTER", f"{name} {', '.join(unknown)} is not one of {', '.join(known)} "
                           "(a comma list selects several)", name)
    return states


def parse_time(text: str | None, name: str) -> float | None:
    """A time filter: Unix seconds (the client turns dates and ``1h`` into them)."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise CommandError(400, "INVALID_FILTER", f"{name} must be Unix seconds (e.g. 1800000000.5), got {text!r}; "
                           "the CLI and the client accept dates and durations such as 1h", name) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise CommandError(400, "INVALID_FILTER", f"{name} must be a finite number of Unix seconds, got {text!r}", name)
    return value


def parse_count(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise CommandError(400, "INVALID_FILTER", f"{name} must be a whole number from {low} to {high}, got {text!r}",
                           name)
    return value


# --- jobs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    """``GET /v1/jobs``: every filter given must match; ``since``/``until`` bound ``submitted_at``."""

    user: str | None = None
    queue: str | None = None
    states: frozenset[str] = frozenset()
    since: float | None = None
    until: float | None = None

    def matches(self, record: JobRecord) -> bool:
        return ((self.user is None or record.user == self.user)
                and (self.queue is None or record.queue == self.queue)
                and (not self.states or record.state in self.states)
                and (self.since is None or record.submitted_at >= self.since)
                and (self.until is None or record.submitted_at <= self.until))


def select_jobs(entries: Iterable[JobEntry], wanted: JobFilter, limit: int, offset: int = 0) -> tuple[list[JobEntry], int]:
    """The page ``[offset, offset + limit)`` of the matching jobs, newest submission first (ties:
    the later submitted first), and how many match in all."""
    found = [e for e in entries if wanted.matches(e.record)]
    found.sort(key=lambda e: (-e.record.submitted_at, -e.seq))
    return found[offset:offset + limit], len(found)


def job_view(core: BatchCore, entry: JobEntry, with_spec: bool = False) -> dict[str, Any]:
    """The API's Job value; ``with_spec`` adds the spec as submitted (answers about one job)."""
    view: dict[str, Any] = dict(core.job_summary(entry))
    if with_spec:
        view["spec"] = entry.spec.to_data()
    return view


# --- attempts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptFilter:
    """``GET /v1/jobs/{id}/attempts`` and ``/v1/history``: stage, index, state, and
    ``launched_at`` in [since, until]."""

    stage: str | None = None
    index: int | None = None
    states: frozenset[str] = frozenset()
    since: float | None = None
    until: float | None = None

    def matches(self, attempt: AttemptRecord) -> bool:
        return ((self.stage is None or attempt.stage == self.stage)
                and (self.index is None or attempt.index == self.index)
                and (not self.states or attempt.state in self.states)
                and (self.since is None or attempt.launched_at >= self.since)
                and (self.until is None or attempt.launched_at <= self.until))


def attempt_view(attempt: AttemptRecord, hosts: Mapping[str, str]) -> dict[str, Any]:
    """The API's Attempt value: the record without the replay's sequence numbers, plus
    ``hostname`` when the agent's is known."""
    view: dict[str, Any] = msgspec.to_builtins(attempt)
    for internal in ("launched_seq", "running_seq", "finished_seq"):
        view.pop(internal, None)
    host = hosts.get(attempt.agent_id) if attempt.agent_id else None
    if host:
        view["hostname"] = host
    return view


def job_attempts(order: Sequence[str], attempts: Iterable[AttemptRecord], wanted: AttemptFilter) -> list[AttemptRecord]:
    """One job's matching attempts by (stage order, index, attempt); stages not in ``order``
    (none, for a valid store) come last, by name."""
    rank = {name: i for i, name in enumerate(order)}
    found = [a for a in attempts if wanted.matches(a)]
    found.sort(key=lambda a: (rank.get(a.stage, len(rank)), a.stage, a.index, a.attempt))
    return found


def history_jobs(jobs: Mapping[str, JobEntry], user: str | None, queue: str | None, since: float | None,
                 until: float | None) -> list[JobEntry]:
    """The jobs whose attempts the history must read: the user's and queue's, less those that
    cannot hold an attempt launched in [since, until] (launched after submission, before the end)."""
    chosen = []
    for entry in jobs.values():
        record = entry.record
        if (user is not None and record.user != user) or (queue is not None and record.queue != queue):
            continue
        if until is not None and record.submitted_at > until:
            continue
        if since is not None and record.state in ENDED and record.finished_at is not None \
                and record.finished_at < since:
            continue
        chosen.append(entry)
    return chosen


def history_rows(entries: Iterable[JobEntry], attempts_of: Callable[[str], Iterable[AttemptRecord]],
                 wanted: AttemptFilter, limit: int, hosts: Mapping[str, str]) -> list[dict[str, Any]]:
    """``/v1/history``: the matching attempts of ``entries`` (read with ``attempts_of(job id)``),
    the last launched first, at most ``limit``, each with its job's user, queue and name."""
    found: list[tuple[AttemptRecord, JobRecord]] = []
    for entry in entries:
        found.extend((a, entry.record) for a in attempts_of(entry.record.id) if wanted.matches(a))
    found.sort(key=lambda pair: (-pair[0].launched_at, pair[0].task_id))
    rows = []
    for attempt, record in found[:limit]:
        row = attempt_view(attempt, hosts)
        row.update(user=record.user, queue=record.queue, job_name=record.name)
        rows.append(row)
    return rows


# --- queues --------------------------------------------------------------------------------------


def queues_view(core: BatchCore) -> dict[str, Any]:
    """``GET /v1/queues``: each queue's limits and load, each submitter's weight and share.

    ``pending`` counts tasks waiting in the queue for an offer (ready to run); tasks waiting on
    their dependencies, their stage's parallelism or a retry's backoff are not in it yet. Users
    are those with a job kept that has not ended, those running tasks, and those given a weight."""
    pending: dict[str, int] = {}
    running_by_user: dict[str, int] = {}
    users: set[str] = {name for name, _ in core.queues.config.weights}
    for entry in core.jobs.values():
        record = entry.record
        user = record.user or "anonymous"
        pending[record.queue] = pending.get(record.queue, 0) + core.queues.pending_count(record.id)
        live = len(entry.run.live_tasks()) if entry.run is not None else 0
        if live:
            running_by_user[user] = running_by_user.get(user, 0) + live
        if live or record.state not in ENDED:
            users.add(user)
    config = core.queues.config
    queues = [{"name": q.name, "priority": q.priority, "max_running": q.max_running,
               "running": core.queues.running_count(q.name), "pending": pending.get(q.name, 0)}
              for q in sorted(config.queues, key=lambda q: (-q.priority, q.name))]
    return {"queues": queues,
            "users": [{"user": u, "weight": config.weight(u), "share": round(core.queues.share(u), 6),
                       "running": running_by_user.get(u, 0)} for u in sorted(users)]}
