"""The batch framework's core: jobs (:class:`~.job_run.JobRun`) fed to fair queues
(:class:`~.queues.BatchQueues`), offers turned into launches, status updates into decisions.

A pure state machine, as the services core: every event (subscribed, offers, a status update,
a tick, a command from the API in :mod:`.commands`) comes with ``now`` and returns the effects to
execute (:mod:`.effects`), the batch's :class:`~.effects.Persist` first (write-ahead: an attempt
is stored before its task is launched, an index's success before its update is acknowledged).

How the pieces meet:

* A job's run says which indices may run (``ready``); the core moves them into the queue
  (``queued`` + ``add_indices``) for the jobs an event touched — the *dirty* jobs — and for jobs
  whose retry backoff ended. The run keeps ``queued + live <= parallelism``; the queue keeps
  fairness, queue limits and placement.
* Offers go to ``assign``; each placed task becomes an attempt (``launched``, persisted) and a
  TaskInfo (:mod:`.tasks`); unused offers are declined.
* A status update goes to the job's run; its outcomes are applied here: records to the ledger,
  kills to the master, ``Unqueue`` to the queue, the job's end to the queue and the events.
  A terminal update frees the task's queue slot only if it ended the live attempt (an update
  the run ``Ignored`` is a duplicate of an end already recorded).
* Timers: each job has one ``due`` time (a task's timeout, a kill to repeat, the deadline, a
  backoff's end) kept as a lower bound and recomputed by ``JobRun.timeouts`` when reached, so a
  tick costs nothing for jobs with nothing due. Ended jobs expire ``ttl_after_finished`` after
  their end (records deleted).

Demand (what the master should offer) is computed once per tick and after commands, not per
status update: ``BatchQueues.demand`` walks every waiting request (57-88 ms over 100,000
requests), and a second of staleness only means an offer of a shape that no longer waits, which
is declined.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from tepui.frameworks.batch import stage_run as S
from tepui.frameworks.batch.artifacts import Producer, input_uris, task_files_credential
from tepui.frameworks.batch.effects import Decline, Demand, Effect, Kill, Launch, Publish, Reconcile
from tepui.frameworks.batch.job_run import ENDED, KILL_RETRY_SECONDS, JobRun
from tepui.frameworks.batch.ledger import NS_ATTEMPTS, NS_FRAMEWORK, NS_JOBS, NS_SPECS, NS_STAGES, Ledger
from tepui.frameworks.batch.queue_values import AttributeRule, OfferView, PendingTask, QueuesConfig, TaskRef, TaskRequest
from tepui.frameworks.batch.queues import BatchQueues
from tepui.frameworks.batch.records import AttemptRecord, JobRecord, StageRecord
from tepui.frameworks.batch.run_outcomes import (
    Ignored, IndexFailed, IndexSucceeded, JobEnded, KillTask, Outcome, RetryAt, SaveAttempt, SaveJob, SaveStage,
    StageEnded, Unqueue,
)
from tepui.frameworks.batch.spec import JobSpec
from tepui.frameworks.batch.tasks import PortPicker, parse_task_id, task_id, task_info
from tepui.sdk import CommandURI, Offer, Resources, TaskInfo, TaskState, TaskStatus

ATTEMPT_EVENTS = frozenset({"FINISHED", "FAILED", "KILLED", "LOST"})  # attempts published when they end


@dataclass(frozen=True)
class BatchConfig:
    role: str = "*"
    refuse_seconds: float = 5.0  # decline filter: demand already keeps unfit offers away
    demand_every_seconds: float = 1.0
    # The cluster's HTTP token, when the master's reads need one: each artifact URI then carries
    # the producing task's own files token derived from it, never the token itself (artifacts.py).
    cluster_token: str | None = None


Producers = dict[tuple[str, str, int], tuple[str, str | None]]  # (job, stage, index) -> (task id, agent id)


@dataclass
class JobEntry:
    """One job the framework knows: its spec and record, its run (None for an ended job loaded
    from the store that cannot be retried), the stage records of an ended job, and timers."""

    spec: JobSpec
    record: JobRecord
    run: JobRun | None
    seq: int
    requests: dict[str, TaskRequest] = field(default_factory=dict)
    stage_records: dict[str, StageRecord] = field(default_factory=dict)
    due: float | None = None  # JobRun.timeouts should be called by then


def constraint_rules(spec: JobSpec, stage: str) -> tuple[AttributeRule, ...]:
    """The stage's constraints as the queue's rules: IS, LIKE, UNLIKE, and CLUSTER with a value
    (= IS). The operators that depend on where the other tasks went (UNIQUE, MAX_PER, GROUP_BY,
    CLUSTER without a value) are refused at submission (:mod:`.commands`)."""
    rules = []
    for c in spec.stage(stage).constraints:
        operator = "IS" if c.operator == "CLUSTER" else c.operator
        rules.append(AttributeRule(c.field, operator, c.value or ""))
    return tuple(rules)


def task_request(spec: JobSpec, record: JobRecord, stage_name: str, seq: int) -> TaskRequest:
    stage = spec.stage(stage_name)
    return TaskRequest(
        job_id=record.id, stage=stage_name, user=record.user or "anonymous", queue=record.queue,
        resources=stage.resources.scalars(), priority=record.priority, submitted=seq,
        gang=f"{record.id}/{stage_name}" if stage.gang else None, gang_size=stage.array if stage.gang else 0,
        constraints=constraint_rules(spec, stage_name), ports=stage.resources.ports,
    )


class BatchCore:
    def __init__(self, queues: QueuesConfig | None = None, config: BatchConfig = BatchConfig()) -> None:
        self.config = config
        self.master_url: str | None = None  # where downstream tasks fetch upstream outputs (artifacts)
        self.queues = BatchQueues(queues)
        self.ledger = Ledger()
        self.jobs: dict[str, JobEntry] = {}
        self.framework_id: str | None = None
        self.producers: Producers = {}
        self.agent_hosts: dict[str, str] = {}  # agent id -> hostname, from offers (the API's attempts)
        self._seq = 0
        self._dirty: set[str] = set()
        self._changed: set[str] = set()  # jobs whose counts changed since the last tick's events
        self._declared: tuple[tuple[Resources, int], ...] | None = None
        self._demand_at = float("-inf")
        self._new_work = False

    # --- loading ------------------------------------------------------------------------------

    def load(self, framework_id: str | None, jobs: Iterable[tuple[JobSpec, JobRecord, list[AttemptRecord] | None,
                                                                   list[StageRecord]]], now: float) -> None:
        """What the store held: each job with its attempts (None for an ended job that is not
        rebuilt) and stage records, oldest submission first. Live attempts are running as far
        as the queue knows; subscribing reconciles them."""
        self.framework_id = framework_id
        for spec, record, attempts, stages in sorted(jobs, key=lambda j: (j[1].submitted_at, j[1].id)):
            run = JobRun.from_records(spec, record, attempts) if attempts is not None else None
            entry = self.add_job(spec, run.job if run is not None else record, run)  # the run's own record
            entry.stage_records = {s.stage: s for s in stages}
            for a in attempts or ():
                if a.state == "FINISHED" and spec.stage(a.stage).outputs:
                    self.producers[(record.id, a.stage, a.index)] = (a.task_id, a.agent_id)
            if run is not None:
                for tid, _agent in run.live_tasks():
                    key = parse_task_id(tid)
                    if key is not None:
                        self.queues.started(PendingTask(entry.requests[key.stage], key.index))
                entry.due = now

    def add_job(self, spec: JobSpec, record: JobRecord, run: JobRun | None) -> JobEntry:
        self._seq += 1
        entry = JobEntry(spec, record, run, self._seq)
        entry.requests = {s.name: task_request(spec, record, s.name, self._seq) for s in spec.stages}
        self.jobs[record.id] = entry
        if run is not None and record.state not in ENDED:
            self._dirty.add(record.id)
        return entry

    # --- batches ------------------------------------------------------------------------------

    def finish(self, out: list[Effect]) -> list[Effect]:
        """The batch's effects, its Persist first (write-ahead)."""
        persist = self.ledger.flush()
        return ([persist] if persist is not None else []) + out

    # --- events -------------------------------------------------------------------------------

    def subscribed(self, framework_id: str, now: float, master_url: str | None = None) -> list[Effect]:
        """``master_url``: the master's HTTP URL, whose files proxy serves upstream outputs."""
        out: list[Effect] = []
        self.master_url = master_url
        if framework_id != self.framework_id:
            self.framework_id = framework_id
            self.ledger.put(NS_FRAMEWORK, "id", framework_id)
        live = tuple(t for e in self.jobs.values() if e.run is not None for t in e.run.live_tasks())
        if live:  # an empty explicit list would be a second implicit reconciliation
            out.append(Reconcile(live))
        out.append(Reconcile(()))  # implicit: tasks of ours we have no attempt for are killed
        self._top_up(now, out)
        self._declared = None
        self._demand(now, out, force=True)
        return self.finish(out)

    def offers(self, offers: Sequence[Offer], now: float) -> list[Effect]:
        out: list[Effect] = []
        self._top_up(now, out)
        self.agent_hosts.update((o.agent_id, o.hostname) for o in offers if o.hostname)
        views = [OfferView(o.id, o.agent_id, Resources.from_wire(o.resources).unreserved(), o.hostname,
                           dict(o.attributes)) for o in offers]
        assignment = self.queues.assign(views, now)
        by_id = {v.offer_id: v for v in views}
        for placed in assignment.launches:
            offer = by_id[placed.offer_id]
            picker = PortPicker(offer.resources.ranges("ports"))
            infos = [self._launch(pending, offer, picker, now, out) for pending in placed.tasks]
            out.append(Launch(placed.offer_id, tuple(infos)))
        if assignment.unused:
            out.append(Decline(assignment.unused, self.config.refuse_seconds))
        return self.finish(out)

    def _launch(self, pending: PendingTask, offer: OfferView, picker: PortPicker, now: float,
                out: list[Effect]) -> TaskInfo:
        request, index = pending
        entry = self.jobs[request.job_id]
        run = entry.run
        assert run is not None, "a queued task of a job without a run"
        attempt = run.stages[request.stage].tries[index]
        tid = task_id(request.job_id, request.stage, index, attempt)
        self.apply(entry, run.launched(request.stage, index, attempt, tid, offer.agent_id, now), now, out)
        timeout = entry.spec.stage(request.stage).timeout_seconds
        if timeout is not None:
            self.wake(entry, now + timeout)
        ports = picker.take(request.ports)
        inputs = self._inputs(entry.spec, request.job_id, request.stage, index)
        return task_info(entry.spec, request.job_id, request.stage, index, attempt, offer.agent_id, offer.hostname,
                         ports, inputs)

    def _inputs(self, spec: JobSpec, job_id: str, stage: str, index: int) -> Sequence[CommandURI]:
        """The upstream outputs task ``index`` of ``stage`` fetches (:mod:`.artifacts`)."""
        if not any(spec.stage(d.stage).outputs for d in spec.stage(stage).depends_on):
            return ()
        if self.master_url is None or self.framework_id is None:
            raise ValueError("artifacts need the master's HTTP URL: subscribe with master_url")
        producers, framework_id = self.producers, self.framework_id

        def producer(upstream: str, i: int) -> Producer | None:
            made = producers.get((job_id, upstream, i))
            return None if made is None or made[1] is None else Producer(made[0], made[1], framework_id)

        token = self.config.cluster_token
        return input_uris(spec, stage, index, producer, self.master_url,
                          task_files_credential(token) if token else None)

    def status_update(self, status: TaskStatus, now: float) -> list[Effect]:
        out: list[Effect] = []
        key = parse_task_id(status.task_id)
        entry = self.jobs.get(key.job) if key is not None else None
        ended = status.state.is_terminal or status.state == TaskState.UNKNOWN
        if entry is None or entry.run is None or key is None:
            if not ended:  # a task of ours we have no job for (its record expired): it must not run on
                out.append(Kill(status.task_id, status.agent_id))
            return self.finish(out)
        outcomes = entry.run.status(status.task_id, status.state, status.exit_code, status.reason, now)
        if outcomes and isinstance(outcomes[0], KillTask) and outcomes[0].agent_id is None:
            # a stale task, killed on the agent that reported it: after a failover the master defers
            # a kill for an agent it expects back, and answers "unknown" to one without an agent
            outcomes = (KillTask(status.task_id, status.agent_id, outcomes[0].why),)
        if ended and not (len(outcomes) == 1 and isinstance(outcomes[0], Ignored)):
            self.queues.finished(TaskRef(key.job, key.stage, key.index))
        self.apply(entry, outcomes, now, out)
        self._top_up(now, out)
        return self.finish(out)

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for job_id, entry in list(self.jobs.items()):
            run = entry.run
            if run is not None and entry.due is not None and entry.due <= now:
                tick = run.timeouts(now)
                entry.due = tick.next_at
                self.apply(entry, tick.outcomes, now, out)
                self._dirty.add(job_id)
            if entry.record.state in ENDED:
                self._expire(entry, now, out)
        self._top_up(now, out)
        for job_id in sorted(self._changed):
            if job_id in self.jobs:
                out.append(Publish("job_updated", {"job": self.job_summary(self.jobs[job_id])}))
        self._changed.clear()
        self._demand(now, out)
        return self.finish(out)

    # --- outcomes -----------------------------------------------------------------------------

    def apply(self, entry: JobEntry, outcomes: Iterable[Outcome], now: float, out: list[Effect]) -> None:
        job_id = entry.record.id
        unqueued: dict[str, int] = {}
        for o in outcomes:
            if isinstance(o, SaveAttempt):
                rec = o.record
                self.ledger.put(NS_ATTEMPTS, rec.task_id, rec)
                if rec.state == "FINISHED" and entry.spec.stage(rec.stage).outputs:
                    self.producers[(job_id, rec.stage, rec.index)] = (rec.task_id, rec.agent_id)
                if rec.state in ATTEMPT_EVENTS:
                    out.append(Publish("attempt_updated", {"attempt": msgspec.to_builtins(rec)}))
            elif isinstance(o, SaveJob):
                self.ledger.put(NS_JOBS, job_id, o.record)
            elif isinstance(o, SaveStage):
                self.ledger.put(NS_STAGES, f"{job_id}/{o.record.stage}", o.record)
                entry.stage_records[o.record.stage] = o.record
            elif isinstance(o, KillTask):
                out.append(Kill(o.task_id, o.agent_id))
                self.wake(entry, now + KILL_RETRY_SECONDS)  # the run repeats an unconfirmed kill then
            elif isinstance(o, Unqueue):
                unqueued[o.stage] = unqueued.get(o.stage, 0) + 1
            elif isinstance(o, RetryAt):
                self.wake(entry, o.at)
            elif isinstance(o, JobEnded):
                self._ended(entry, now, out)
            elif isinstance(o, (IndexSucceeded, IndexFailed, StageEnded, Ignored)):
                pass
        if unqueued:
            if entry.record.suspended or entry.record.state in ENDED:
                self.queues.remove_job(job_id)
            else:
                for stage in unqueued:
                    self.queues.remove_stage(job_id, stage)
        self._dirty.add(job_id)
        self._changed.add(job_id)

    def _ended(self, entry: JobEntry, now: float, out: list[Effect]) -> None:
        job_id = entry.record.id
        self.queues.remove_job(job_id)
        run = entry.run
        if run is not None:
            for name in run.order:
                record = run.stage_record(name)
                entry.stage_records[name] = record
                self.ledger.put(NS_STAGES, f"{job_id}/{name}", record)
        out.append(Publish("job_ended", {"job": self.job_summary(entry)}))

    def _expire(self, entry: JobEntry, now: float, out: list[Effect]) -> None:
        """Forget an ended job ``ttl_after_finished`` after its end (Kubernetes' TTL controller)."""
        record = entry.record
        ttl = entry.spec.ttl_seconds
        if ttl is None or record.finished_at is None or now < record.finished_at + ttl:
            return
        if entry.run is not None and entry.run.live_tasks():
            return  # kills not confirmed yet: keep the record until its tasks ended
        self.forget(entry)
        out.append(Publish("job_deleted", {"id": record.id}))

    def forget(self, entry: JobEntry) -> None:
        job_id = entry.record.id
        self.jobs.pop(job_id, None)
        self._dirty.discard(job_id)
        self._changed.discard(job_id)
        for key in [k for k in self.producers if k[0] == job_id]:
            del self.producers[key]
        self.ledger.delete(NS_JOBS, job_id)
        self.ledger.delete(NS_SPECS, job_id)
        for stage in entry.spec.stages:
            self.ledger.delete(NS_STAGES, f"{job_id}/{stage.name}")
        self.ledger.delete_prefix(NS_ATTEMPTS, f"{job_id}.")

    def wake(self, entry: JobEntry, at: float) -> None:
        entry.due = at if entry.due is None else min(entry.due, at)

    # --- the queue ----------------------------------------------------------------------------

    def _top_up(self, now: float, out: list[Effect]) -> None:
        """Move what the dirty jobs may run now into the queue."""
        for job_id in sorted(self._dirty, key=lambda j: self.jobs[j].seq if j in self.jobs else 0):
            entry = self.jobs.get(job_id)
            if entry is None or entry.run is None:
                continue
            ready = entry.run.ready(now)
            if ready.next_at is not None:
                self.wake(entry, ready.next_at)
            by_stage: dict[str, list[int]] = {}
            for task in ready.tasks:
                entry.run.queued(task.stage, task.index, task.attempt, now)
                by_stage.setdefault(task.stage, []).append(task.index)
            for stage, indices in by_stage.items():
                self.queues.add_indices(entry.requests[stage], indices)
                self._new_work = True
        self._dirty.clear()

    def _demand(self, now: float, out: list[Effect], force: bool = False) -> None:
        if not force and not self._new_work and now < self._demand_at + self.config.demand_every_seconds:
            return
        shapes = self.queues.demand(now)
        revive = self._new_work and bool(shapes)
        if force or revive or shapes != self._declared:
            out.append(Demand(shapes, revive or (force and bool(shapes))))
        self._declared, self._demand_at, self._new_work = shapes, now, False

    def demand_now(self, now: float, out: list[Effect]) -> None:
        """After a command: what it queued is declared (and revived) in the same batch."""
        self._top_up(now, out)
        self._demand(now, out, force=False)

    # --- views --------------------------------------------------------------------------------

    def stage_view(self, entry: JobEntry, name: str) -> StageRecord:
        if entry.run is not None:
            return entry.run.stage_record(name)
        known = entry.stage_records.get(name)
        if known is not None:
            return known
        array = entry.spec.stage(name).array
        return StageRecord(job=entry.record.id, stage=name, state=S.WAITING, pending=array, queued=0, running=0,
                           succeeded=0, failed=0, skipped=0)

    def job_summary(self, entry: JobEntry) -> dict[str, object]:
        """The API's Job value without the spec (docs/batch.md "REST API")."""
        record = msgspec.to_builtins(entry.record)
        stages = []
        totals = {"total": 0, "succeeded": 0, "failed": 0, "running": 0, "pending": 0}
        order = entry.run.order if entry.run is not None else entry.spec.stage_order()
        for name in order:
            spec = entry.spec.stage(name)
            view = msgspec.to_builtins(self.stage_view(entry, name))
            view["array"] = spec.array
            view["depends_on"] = [{"stage": d.stage, "condition": d.condition} for d in spec.depends_on]
            stages.append(view)
            totals["total"] += spec.array
            totals["succeeded"] += view["succeeded"]
            totals["failed"] += view["failed"] + view["skipped"]
            totals["running"] += view["running"]
            totals["pending"] += view["pending"] + view["queued"]
        record["stages"] = stages
        record["tasks"] = totals
        return record
