"""The read side of the batch framework's store: every attempt of every job kept, for
``GET /v1/jobs/{id}/attempts`` and ``GET /v1/history`` (Slurm's ``sacct``).

A shell (it reads a :class:`tepui.sdk.Store`). Why attempts are read from the store and not the
core: the core keeps in memory only what it decides with — the live attempt of each index — so a
100,000-task job costs its records once, on disk; an ended attempt is only ever read back here.
The store is committed before any answer or launch that depends on it (write-ahead), so what is
read here is at most one reactor turn behind the core. The filtering itself is pure
(:mod:`.views`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec

from tepui.frameworks.batch.core import JobEntry
from tepui.frameworks.batch.ledger import NS_ATTEMPTS
from tepui.frameworks.batch.records import AttemptRecord
from tepui.frameworks.batch.views import MAX_LIMIT, AttemptFilter, attempt_view, history_jobs, history_rows, job_attempts
from tepui.sdk import Store

_decode = msgspec.json.Decoder(AttemptRecord).decode

States = str | Collection[str] | None  # one state, a comma list, or several


def _states(state: States) -> frozenset[str]:
    if state is None:
        return frozenset()
    values = state.split(",") if isinstance(state, str) else state
    return frozenset(s.strip().upper() for s in values if s.strip())


class History:
    def __init__(self, store: Store) -> None:
        self.store = store

    def records(self, job_id: str) -> list[AttemptRecord]:
        """Every stored attempt of one job (its task ids share the prefix ``job.``)."""
        return [_decode(entry.value) for entry in self.store.list(NS_ATTEMPTS, prefix=job_id + ".").values()]

    def attempts(self, job_id: str, stage: str | None = None, index: int | None = None, state: States = None, *,
                 order: Sequence[str] = (), hosts: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """One job's attempts by (stage order, index, attempt); ``order``: the job's stage order
        (``JobSpec.stage_order()``), ``hosts``: agent id → hostname (``BatchCore.agent_hosts``)."""
        wanted = AttemptFilter(stage=stage, index=index, states=_states(state))
        return [attempt_view(a, hosts or {}) for a in job_attempts(order, self.records(job_id), wanted)]

    def search(self, jobs: Mapping[str, JobEntry], user: str | None = None, queue: str | None = None,
               state: States = None, stage: str | None = None, since: float | None = None,
               until: float | None = None, limit: int = 1000, *,
               hosts: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """``/v1/history``: attempts of the jobs kept, filtered by the job's user and queue and
        the attempt's state, stage and ``launched_at`` in [since, until]; the last launched
        first, at most ``limit`` (≤ 10,000), each with ``user``, ``queue`` and ``job_name``."""
        wanted = AttemptFilter(stage=stage, states=_states(state), since=since, until=until)
        entries = history_jobs(jobs, user, queue, since, until)
        return history_rows(entries, self.records, wanted, max(0, min(limit, MAX_LIMIT)), hosts or {})
