"""The cron core on a fake clock, playing its shell and the batch framework: :class:`Sim`
runs every batch of effects through the write-ahead check (at most one Persist, first; every
SubmitJob's fire is stored INTENDED with the very spec it submits), commits the Persist to a
store of JSON bytes, plays the batch framework's idempotent submit (same id and spec: no second
job; another spec: 409 JOB_EXISTS) and restarts a core from the store with
:func:`~tepui.frameworks.cron.loading.load_schedules`, as the shell does.

Crash points: :meth:`Sim.batch` with ``commit=False`` (the process dies before the store
commit), ``execute=False`` (after the commit, before the submit), and :meth:`Sim.deliver` with
``answer=False`` (the batch framework created the job, the answer never came back).

Schedules here are real specs (:func:`schedule`), most of them ISO intervals from the epoch, so
fire keys are ``<id>-<unix seconds>`` of round numbers and every effect can be compared whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec

from tepui.frameworks.cron import commands
from tepui.frameworks.cron.core import NS_FIRES, CronConfig, CronCore
from tepui.frameworks.cron.definition import ScheduleDef, build
from tepui.frameworks.cron.effects import CancelJob, Effect, Persist, Publish, SubmitJob
from tepui.frameworks.cron.loading import load_schedules
from tepui.frameworks.cron.records import FireRecord, ScheduleRecord

JOB: dict[str, Any] = {"name": "report", "stages": [{"name": "s", "command": "x", "resources": {"cpus": 1, "mem": 64}}]}


def schedule(schedule_id: str = "r", every: float = 60.0, job: dict[str, Any] | None = None, suspend: bool = False,
             jitter: float = 0.0, cron: str | None = None, concurrency: str = "Allow",
             starting_deadline: float | None = None, **fields: Any) -> ScheduleDef:
    """A schedule firing every ``every`` seconds from the epoch (``R/1970-01-01T00:00:00Z/PT60S``:
    keys ``r-60``, ``r-120``...) or by ``cron``, through the real spec and fire computation."""
    data: dict[str, Any] = {"id": schedule_id, "job": job or JOB, "suspend": suspend, "jitter": f"PT{jitter:g}S",
                            "concurrency_policy": concurrency, **fields}
    if cron is not None:
        data["cron"] = cron
    else:
        data["interval"] = f"R/1970-01-01T00:00:00Z/PT{every:g}S"
    if starting_deadline is not None:
        data["starting_deadline"] = f"PT{starting_deadline:g}S"
    return build(data)


def only(effects: Iterable[Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def kinds(effects: Iterable[Effect]) -> list[str]:
    return [type(e).__name__ + (f":{e.kind}" if isinstance(e, Publish) else "") for e in effects]


def submitted_ids(effects: Iterable[Effect]) -> list[str]:
    return [s.job_id for s in only(effects, SubmitJob)]


class Sim:
    """A core, the store its Persists write, and the batch framework's jobs."""

    def __init__(self, config: CronConfig = CronConfig()) -> None:
        self.config = config
        self.core = CronCore(config)
        self.store: dict[str, dict[str, bytes]] = {}
        self.journal: list[FireRecord] = []  # every fire record ever committed (pruning aside)
        self.jobs: dict[str, dict[str, Any]] = {}  # the batch framework: job id -> spec
        self.created: Counter[str] = Counter()  # job id -> jobs created under it (must stay 1)
        self.submits: list[tuple[str, dict[str, Any]]] = []  # every submit that reached the batch framework
        self.cancelled: list[str] = []
        self.pending: list[SubmitJob] = []  # submits executed but not yet delivered (see deliver)

    def batch(self, effects: list[Effect], commit: bool = True, execute: bool = True) -> list[Effect]:
        """``commit=False``: the process dies before the store commit (nothing happened);
        ``execute=False``: it dies right after the commit (no submit, no cancel sent)."""
        persists = only(effects, Persist)
        assert len(persists) <= 1, effects
        if persists:
            assert effects[0] is persists[0], "a batch's Persist comes first"
        if not commit:
            return effects
        if persists:
            p = persists[0]
            for ns, prefix in p.delete_prefixes:
                for key in [k for k in self.store.get(ns, {}) if k.startswith(prefix)]:
                    del self.store[ns][key]
            for ns, key in p.deletes:
                self.store.get(ns, {}).pop(key, None)
            for ns, key, value in p.puts:
                self.store.setdefault(ns, {})[key] = msgspec.json.encode(value)
                if ns == NS_FIRES:
                    assert isinstance(value, FireRecord)
                    self.journal.append(msgspec.json.decode(msgspec.json.encode(value), type=FireRecord))
        for submit in only(effects, SubmitJob):
            stored = self.fire(submit.schedule_id, submit.job_id)
            assert stored.state == "INTENDED" and stored.job == submit.spec, f"{submit.job_id} submitted before " \
                "its INTENDED record (with this spec) was stored"
        if execute:
            self.pending += only(effects, SubmitJob)
            self.cancelled += [c.job_id for c in only(effects, CancelJob)]
        return effects

    # --- the batch framework ---
    def batch_submit(self, submit: SubmitJob) -> tuple[bool, str | None]:
        """``(ok, refusal)``: idempotent on the id, as ``POST /v1/jobs?id=``."""
        self.submits.append((submit.job_id, submit.spec))
        known = self.jobs.get(submit.job_id)
        if known is None:
            self.jobs[submit.job_id] = submit.spec
            self.created[submit.job_id] += 1
            return True, None
        if known != submit.spec:
            return False, f"409 JOB_EXISTS: job {submit.job_id} exists with another spec"
        return True, None

    def deliver(self, now: float, answer: bool = True, fail: tuple[str, bool] | None = None) -> list[Effect]:
        """The shell executes the pending submits and tells the core. ``answer=False``: the jobs
        are created but the answers are lost (the process dies). ``fail=(why, retryable)``: the
        batch framework is unreachable (retryable, nothing created) or refuses."""
        out: list[Effect] = []
        pending, self.pending = self.pending, []
        for submit in pending:
            failure = fail
            if failure is not None and not failure[1] and self.jobs.get(submit.job_id) == submit.spec:
                failure = None  # the batch framework answers a known id and spec before it validates
            if failure is not None:
                if not failure[1]:
                    self.submits.append((submit.job_id, submit.spec))
                out += self.batch(self.core.submit_failed(submit.job_id, failure[0], failure[1], now))
                continue
            ok, refusal = self.batch_submit(submit)
            if not answer:
                continue
            if ok:
                out += self.batch(self.core.submitted(submit.job_id, now))
            else:
                out += self.batch(self.core.submit_failed(submit.job_id, refusal or "", False, now))
        return out

    # --- events ---
    def tick(self, now: float, commit: bool = True, execute: bool = True) -> list[Effect]:
        return self.batch(self.core.tick(now), commit, execute)

    def command(self, name: str, *args: Any) -> tuple[dict[str, Any], list[Effect]]:
        answer, effects = getattr(commands, name)(self.core, *args)
        return answer, self.batch(effects)

    def ended(self, job_id: str, state: str, now: float) -> list[Effect]:
        return self.batch(self.core.job_ended(job_id, state, now))

    def restarted(self, now: float) -> Sim:
        """A new framework process loading what this one stored (JSON round trip), as the shell;
        the batch framework and its jobs live on."""
        fresh = Sim(self.config)
        fresh.store = {ns: dict(keys) for ns, keys in self.store.items()}
        fresh.journal, fresh.jobs, fresh.created, fresh.submits = self.journal, self.jobs, self.created, self.submits
        fresh.cancelled = self.cancelled
        fresh.core.load(load_schedules(fresh.store, build), now)
        return fresh

    # --- reads ---
    def fire(self, schedule_id: str, key: str) -> FireRecord:
        return msgspec.json.decode(self.store[NS_FIRES][f"{schedule_id}/{key}"], type=FireRecord)

    def fires(self, schedule_id: str = "r") -> list[FireRecord]:
        return sorted((msgspec.json.decode(v, type=FireRecord) for k, v in self.store.get(NS_FIRES, {}).items()
                       if k.startswith(schedule_id + "/")), key=lambda f: f.seq)

    def schedule_record(self, schedule_id: str = "r") -> ScheduleRecord:
        return msgspec.json.decode(self.store["schedules"][schedule_id], type=ScheduleRecord)
