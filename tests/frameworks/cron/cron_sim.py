"""The cron core on a fake clock, playing its shell and the batch framework: :class:`Sim`
runs every batch of effects through the write-ahead check (at most one Persist, first; every
SubmitJob's fire is stored INTENDED with the very spec it submits), commits the Persist to a
store of JSON bytes, plays the batch framework's idempotent submit (same id and spec: no second
job; another spec: 409 JOB_EXISTS) and restarts a core from the store with
:func:`~tepui.frameworks.cron.loading.load_schedules`, as the shell does.

Crash points: :meth:`Sim.batch` with ``commit=False`` (the process dies before the store
commit), ``execute=False`` (after the commit, before the submit), and :meth:`Sim.deliver` with
``answer=False`` (the batch framework created the job, the answer never came back).

Schedules here fire on a :class:`Every` timeline (``start + k·every``, whole seconds) with
keys ``<id>-<unix seconds>``, so every effect can be compared whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec

from tepui.frameworks.cron import commands
from tepui.frameworks.cron.core import NS_FIRES, CronConfig, CronCore
from tepui.frameworks.cron.definition import Due, Policy, ScheduleDef
from tepui.frameworks.cron.effects import CancelJob, Effect, Persist, Publish, SubmitJob
from tepui.frameworks.cron.loading import load_schedules
from tepui.frameworks.cron.records import FireRecord, ScheduleRecord

JOB: dict[str, Any] = {"name": "report", "stages": [{"name": "s", "command": "x", "resources": {"cpus": 1, "mem": 64}}]}


class Every:
    """Fires at ``start + k·every`` for k = 0, 1, ... (``limit``: how many there are at most);
    ``calls`` counts the work asked of it (the 10,000-missed test bounds it)."""

    def __init__(self, schedule_id: str, every: float, start: float = 0.0, limit: int | None = None) -> None:
        self.id, self.every, self.start, self.limit, self.calls = schedule_id, every, start, limit, 0

    def _k_after(self, t: float) -> int:
        k = max(int((t - self.start) // self.every) + 1, 0)
        return k

    def _due(self, k: int) -> Due | None:
        if self.limit is not None and k >= self.limit:
            return None
        at = self.start + k * self.every
        return Due(f"{self.id}-{int(at)}", at)

    def next_after(self, t: float) -> Due | None:
        self.calls += 1
        return self._due(self._k_after(t))

    def fires_between(self, after: float, until: float, limit: int) -> list[Due]:
        self.calls += 1
        out: list[Due] = []
        k = self._k_after(after)
        while len(out) < limit:
            due = self._due(k)
            if due is None or due.at > until:
                break
            out.append(due)
            k += 1
        return out

    def count_between(self, after: float, until: float) -> int:
        self.calls += 1
        if until <= after:
            return 0
        first, last = self._k_after(after), self._k_after(until) - 1
        if self.limit is not None:
            last = min(last, self.limit - 1)
        return max(last - first + 1, 0)


def schedule(schedule_id: str = "r", every: float = 60.0, start: float = 0.0, job: dict[str, Any] | None = None,
             suspend: bool = False, jitter: float = 0.0, **policy: Any) -> ScheduleDef:
    """A schedule of the stand-in timeline; its data holds every argument, so :func:`build`
    rebuilds it after a restart."""
    data = {"id": schedule_id, "every": every, "start": start, "job": job or JOB, "suspend": suspend,
            "jitter": jitter, "policy": policy}
    return build(data)


def build(data: dict[str, Any]) -> ScheduleDef:
    jitter = float(data["jitter"])
    return ScheduleDef(data["id"], Every(data["id"], data["every"], data["start"]), data["job"],
                       Policy(**data["policy"]), data, data["suspend"],
                       (lambda key: float(int(key.rsplit("-", 1)[1]) % 7) * jitter / 7) if jitter else
                       (lambda key: 0.0))


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
            if fail is not None:
                if not fail[1]:
                    self.submits.append((submit.job_id, submit.spec))
                out += self.batch(self.core.submit_failed(submit.job_id, fail[0], fail[1], now))
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
