"""The batch core on a fake clock, playing its shell: :class:`Sim` runs every batch of effects
through the write-ahead check (at most one Persist, first; every launched task's attempt is in
it), commits the Persist to a store of JSON bytes, and restarts a core from that store with
:func:`~tepui.frameworks.batch.loading.load_jobs`, as the shell does. It also keeps the world's
view of the tasks (launched and not yet ended) and fails a launch of an index that still has a
task running: no index runs twice at the same time, across restarts too.

Job ids come from ``new_id`` (``NAME-1``, ``NAME-2``...), so task ids and effects are exact.
Imported by the batch core's tests (test_core.py, test_core_restart.py, test_commands.py, test_core_props.py).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec

from tepui.frameworks.batch import commands
from tepui.frameworks.batch.core import BatchCore
from tepui.frameworks.batch.effects import Effect, Kill, Launch, Persist, Publish
from tepui.frameworks.batch.loading import load_jobs
from tepui.frameworks.batch.queue_values import QueuesConfig
from tepui.frameworks.batch.records import AttemptRecord, JobRecord
from tepui.frameworks.batch.spec import JobSpec, load_job
from tepui.frameworks.batch.tasks import parse_task_id
from tepui.sdk import Offer, Resources, TaskReason, TaskState, TaskStatus

MASTER = "http://m1:5080"
OFFER = "cpus:4;mem:4096;ports:[31000-31009]"


def job(*stages: dict[str, Any], **fields: Any) -> JobSpec:
    """A valid job spec ``j`` of ``stages`` (default: one stage ``s`` running ``x`` with 1 cpu
    and 64 MB)."""
    data: dict[str, Any] = {"name": "j", "stages": list(stages) or [stage("s")]}
    data.update(fields)
    return load_job(data)


def stage(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": "x", "resources": {"cpus": 1, "mem": 64}, **fields}


def offer(offer_id: str, agent: str = "a1", host: str = "h1", resources: str = OFFER,
          attributes: dict[str, str] | None = None) -> Offer:
    return Offer(id=offer_id, framework_id="fw", agent_id=agent, hostname=host,
                 resources=Resources.parse(resources).to_wire(), attributes=attributes or {})


def only(effects: Iterable[Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def kinds(effects: Iterable[Effect]) -> list[str]:
    return [type(e).__name__ + (f":{e.kind}" if isinstance(e, Publish) else "") for e in effects]


def published(effects: Iterable[Effect], kind: str) -> list[dict[str, Any]]:
    return [e.data for e in effects if isinstance(e, Publish) and e.kind == kind]


def launched_ids(effects: Iterable[Effect]) -> list[str]:
    return [t.task_id for launch in only(effects, Launch) for t in launch.tasks]


def killed_ids(effects: Iterable[Effect]) -> list[str]:
    return [k.task_id for k in only(effects, Kill)]


def put_keys(effects: Iterable[Effect]) -> list[tuple[str, str]]:
    return [(ns, key) for p in only(effects, Persist) for ns, key, _ in p.puts]


def index_of(task_id: str) -> tuple[str, str, int]:
    key = parse_task_id(task_id)
    assert key is not None, task_id
    return key.job, key.stage, key.index


class Sim:
    """A core, the store its Persists write, and the tasks running in the world."""

    def __init__(self, queues: QueuesConfig | None = None, ids: itertools.count[int] | None = None) -> None:
        self.queues_config = queues
        self.ids = ids or itertools.count(1)
        self.core = BatchCore(queues)
        self.store: dict[str, dict[str, bytes]] = {}
        self.batches: list[list[Effect]] = []
        self.world: dict[str, str | None] = {}  # task id -> agent: launched, no terminal update sent yet
        self.successes: Counter[tuple[str, str, int]] = Counter()  # (job, stage, index) -> attempts stored as succeeded

    # Every batch passes through here: the write-ahead rule, the store commit, the world.
    def batch(self, effects: list[Effect], execute: bool = True) -> list[Effect]:
        """``execute=False``: the process dies right after the store commit (nothing after the
        Persist is executed: no launch, no kill)."""
        persists = only(effects, Persist)
        assert len(persists) <= 1, effects
        stored: set[str] = set()
        if persists:
            assert effects[0] is persists[0], "a batch's Persist comes first"
            p = persists[0]
            for ns, prefix in p.delete_prefixes:
                for key in [k for k in self.store.get(ns, {}) if k.startswith(prefix)]:
                    del self.store[ns][key]
            for ns, key in p.deletes:
                self.store.get(ns, {}).pop(key, None)
            for ns, key, value in p.puts:
                if ns == "attempts":
                    assert isinstance(value, AttemptRecord)
                    stored.add(key)
                    before = self.store.get(ns, {}).get(key)
                    was = before is not None and msgspec.json.decode(before, type=AttemptRecord).outcome == "succeeded"
                    if value.outcome == "succeeded" and not was:
                        self.successes[(value.job, value.stage, value.index)] += 1
                self.store.setdefault(ns, {})[key] = msgspec.json.encode(value)
        for task in (t for launch in only(effects, Launch) for t in launch.tasks):
            assert task.task_id in stored, f"{task.task_id} launched before its attempt was stored"
            if not execute:
                continue
            running = [t for t in self.world if index_of(t) == index_of(task.task_id)]
            assert not running, f"{task.task_id} launched while {running} still runs"
            self.world[task.task_id] = task.agent_id
        self.batches.append(effects)
        return effects

    # --- events ---
    def subscribe(self, now: float, framework_id: str = "fw") -> list[Effect]:
        return self.batch(self.core.subscribed(framework_id, now, MASTER))

    def offers(self, now: float, *offers: Offer) -> list[Effect]:
        return self.batch(self.core.offers(list(offers), now))

    def update(self, now: float, task_id: str, state: TaskState, exit_code: int | None = None,
               reason: TaskReason | None = None, agent: str | None = "a1") -> list[Effect]:
        if state.is_terminal or state == TaskState.UNKNOWN:
            self.world.pop(task_id, None)
        return self.batch(self.core.status_update(
            TaskStatus(task_id=task_id, state=state, agent_id=agent, exit_code=exit_code, reason=reason), now))

    def tick(self, now: float) -> list[Effect]:
        return self.batch(self.core.tick(now))

    def submit(self, spec: JobSpec, now: float, user: str | None = "ana",
               job_id: str | None = None) -> tuple[dict[str, Any], list[Effect]]:
        answer, effects = commands.submit(self.core, spec, user, now, job_id=job_id,
                                          new_id=lambda name: f"{name}-{next(self.ids)}")
        return answer, self.batch(effects)

    def command(self, name: str, *args: Any) -> tuple[dict[str, Any], list[Effect]]:
        answer, effects = getattr(commands, name)(self.core, *args)
        return answer, self.batch(effects)

    def restarted(self, now: float) -> Sim:
        """A new framework process loading what this one stored (JSON round trip), as the shell."""
        fresh = Sim(self.queues_config, self.ids)
        fresh.store = {ns: dict(keys) for ns, keys in self.store.items()}
        fresh.world, fresh.successes = self.world, self.successes
        framework_id, jobs = load_jobs(fresh.store)
        fresh.core.load(framework_id, jobs, now)
        return fresh

    # --- reads ---
    def record(self, job_id: str) -> JobRecord:
        return msgspec.json.decode(self.store["jobs"][job_id], type=JobRecord)

    def attempt(self, task_id: str) -> AttemptRecord:
        return msgspec.json.decode(self.store["attempts"][task_id], type=AttemptRecord)

    def state(self, job_id: str) -> str:
        return self.core.jobs[job_id].record.state

    def finish(self, now: float, *task_ids: str, agent: str | None = "a1") -> None:
        """Each task reports RUNNING then FINISHED exit 0."""
        for t in task_ids:
            self.update(now, t, TaskState.RUNNING, agent=agent)
            self.update(now, t, TaskState.FINISHED, exit_code=0, agent=agent)
