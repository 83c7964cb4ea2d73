"""One batch job's state machine: which task indices may run, what each task's end means, and
when the job is over. Pure: every call takes ``now``; the answers are typed values
(:mod:`.run_outcomes`); the queue (:mod:`.queues`) decides where and when tasks run, and the core
launches them and feeds their status back here.

The rules (docs/batch.md, "Semantics"):

* **Ready.** A stage opens when its whole-stage dependencies hold (``all_succeeded``: every
  upstream index succeeded, Slurm ``afterok``; ``any_finished``: the upstream ended, Slurm
  ``afterany``); an ``n_to_n`` index waits for the same upstream index (AWS Batch ``N_TO_N``).
  Queued + live ≤ ``parallelism`` (Kubernetes). A retried index waits for its backoff. A gang
  stage's indices are ready all together, or none is. A suspended or ended job has none.
* **One live attempt per index.** An index is queued, launched and ended by its task's terminal
  status before it can be queued again: a kill (timeout, gang, suspend) waits for the task's end.
  ``TASK_UNREACHABLE`` keeps the attempt live (the task may still run behind a partition); the
  retry comes with ``TASK_GONE``/``TASK_LOST`` (Kubernetes ``podReplacementPolicy: Failed``).
* **Success exactly once.** Only a live attempt's ``TASK_FINISHED`` records it; the attempt then
  stops being live, so the same update again (reconciliation after a restart) is ``Ignored``.
* **Failures.** Agent loss (``TASK_LOST``/``GONE``/``DROPPED``/``UNKNOWN`` or an agent
  ``TaskReason``) is retried at once without spending an attempt. Otherwise
  ``Retries.classify`` decides: ``count`` (retry after ``Backoff.delay(spent-1)`` while attempts
  remain), ``ignore`` (retry after the backoff, free), ``fail_index``, ``fail_stage`` (kill the
  stage's live tasks, drop its queued ones, skip the rest: Kubernetes ``FailJob``).
* **Gangs** (MPI semantics): one failure or loss kills the siblings; when all have ended the
  whole gang is retried as one attempt (spent once, or free for a loss). Indices that finished
  are recorded as succeeded only when the whole gang has.
* **Time.** A task's ``timeout`` runs from RUNNING (AWS Batch's attempt duration: fetching and
  image pulls do not count), or from launch while it never reached RUNNING (so a task stuck in
  STAGING is bounded too). The job's ``deadline`` runs from submission, restarted by resume and
  ``retry`` (Kubernetes resets ``startTime`` on resume); passing it kills everything.

Memory and time: measured with tracemalloc, a pending index of a 100,000-task stage costs
:data:`BYTES_PER_PENDING_INDEX` bytes (2.02 B measured; 2.5 B per index for 50,000 + 50,000
joined by ``n_to_n``; ``tests/frameworks/batch/test_job_run.py`` checks the bound). Taking
100,000 tasks through ``ready``/``queued``/``launched``/``status(FINISHED)`` at parallelism
1,000 took 1.0 s on this machine (10 µs per task, the three Save/outcome values included).
"""

from __future__ import annotations

from collections.abc import Iterable

from tepui.frameworks.batch import stage_run as S
from tepui.frameworks.batch.gangs import gang_member_ended
from tepui.frameworks.batch.records import AttemptRecord, JobRecord, StageRecord
from tepui.frameworks.batch.run_outcomes import (
    Ignored, IndexFailed, IndexSucceeded, JobEnded, KillTask, Outcome, Ready, ReadySet, RetryAt, SaveAttempt,
    SaveJob, SaveStage, StageEnded, Tick, Unqueue,
)
from tepui.frameworks.batch.spec import JobSpec
from tepui.frameworks.batch.stage_run import StageRun
from tepui.frameworks.batch.task_ends import failure_reason
from tepui.sdk import TaskReason, TaskState

__all__ = ["BYTES_PER_PENDING_INDEX", "KILL_RETRY_SECONDS", "JobRun", "failure_reason"]

BYTES_PER_PENDING_INDEX = 2  # status + spent bytes; measured 2.02 (3 for a stage with an n_to_n upstream)
KILL_RETRY_SECONDS = 30.0  # a kill not confirmed by then is asked again (services' kill_retry_seconds)

#: kills that stop an attempt without judging it, and the outcome they record
_STOPS = {"suspend": "suspended", "cancel": "cancelled", "deadline": "deadline", "stage_failed": "stage_failed"}
ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED"})
class _Live:
    """A launched attempt (at most one per index)."""

    __slots__ = ("stage", "record", "killing", "kill_at")

    def __init__(self, stage: StageRun, record: AttemptRecord) -> None:
        self.stage = stage
        self.record = record
        self.killing: str | None = record.killed_by
        self.kill_at: float | None = None  # when the kill was last asked; None: not since a restart


class JobRun:
    """The state machine of one job. Build with a :class:`JobSpec` and a :class:`JobRecord`, or
    :meth:`from_records` after a restart."""

    def __init__(self, spec: JobSpec, job: JobRecord) -> None:
        self.spec = spec
        self.job = job
        self.stages = {s.name: StageRun(s) for s in spec.stages}
        self.order = spec.stage_order()
        self._down = {name: spec.downstream(name) for name in self.order}
        self._live: dict[str, _Live] = {}
        self._by_index: dict[tuple[str, int], str] = {}  # (stage, index) -> live task id
        self._queued_at: dict[tuple[str, int], float] = {}
        self.seq = 0  # counts launches, RUNNINGs, ends and retries: the replay's order
        if spec.suspend and job.state == "PENDING":
            job.suspended = True
            job.state = "SUSPENDED"
        self._settle(job.submitted_at, [])

    # --- what may run -----------------------------------------------------------------------

    def ready(self, now: float, limit: int | None = None) -> ReadySet:
        """Tasks that may be queued now (stage order, then retries before fresh indices) and the
        next time a backoff ends. Asking twice without ``queued`` gives the same answer.
        ``limit`` bounds the answer (a whole gang counts as one), so a core topping up a queue
        of 100,000 pending tasks asks for what it has room for, not for everything."""
        if self.job.state in ENDED or self.job.suspended:
            return ReadySet((), None)
        tasks: list[Ready] = []
        gangs: list[str] = []
        next_at: float | None = None
        room = limit if limit is not None else sum(st.array for st in self.stages.values())
        for name in self.order:
            st = self.stages[name]
            if st.state != S.ACTIVE or room <= 0:
                continue
            if st.spec.gang:
                if st.busy or st.counts[S.PENDING] + st.counts[S.BACKOFF] != st.array:
                    continue
                if st.gang_due is not None and st.gang_due > now:
                    next_at = _min(next_at, st.gang_due)
                    continue
                tasks.extend(Ready(name, i, st.tries.get(i, 0) + 1) for i in range(st.array))
                gangs.append(name)
                room -= 1
                continue
            slots = min(st.spec.effective_parallelism - st.busy, room)
            if slots <= 0:
                continue
            due, later = st.due_retries(now, slots)
            next_at = _min(next_at, later)
            fresh = st.fresh(slots - len(due))
            tasks.extend(Ready(name, i, st.tries.get(i, 0) + 1) for i in (*due, *fresh))
            room -= len(due) + len(fresh)
        return ReadySet(tuple(tasks), next_at, tuple(gangs))

    def queued(self, stage: str, index: int, attempt: int, now: float) -> None:
        """The queue took this ready task. Soft state: not persisted (a restarted framework
        asks ``ready`` again)."""
        st = self.stages[stage]
        due = st.gang_due if st.spec.gang else st.retry_due.get(index)
        if st.status[index] not in (S.PENDING, S.BACKOFF) or attempt != st.tries.get(index, 0) + 1 or (
            st.status[index] == S.BACKOFF and due is not None and due > now
        ):
            raise ValueError(f"{stage}[{index}] attempt {attempt} is not ready")
        st.set(index, S.QUEUED)
        st.retry_due.pop(index, None)
        st.tries[index] = attempt
        self._queued_at[(stage, index)] = now

    def unqueued(self, stage: str, index: int, attempt: int) -> None:
        """The queue gave a queued task back without launching it (its launch was refused, the
        queue was reset): the index is ready again with the same try number."""
        st = self.stages[stage]
        if st.status[index] != S.QUEUED or st.tries.get(index) != attempt:
            raise ValueError(f"{stage}[{index}] attempt {attempt} is not queued")
        self._queued_at.pop((stage, index), None)
        self._give_back(st, index)

    def launched(self, stage: str, index: int, attempt: int, task_id: str, agent_id: str | None,
                 now: float) -> tuple[Outcome, ...]:
        """The core is about to launch this queued task: persist the attempt first."""
        st = self.stages[stage]
        if st.status[index] != S.QUEUED or st.tries.get(index) != attempt:
            raise ValueError(f"{stage}[{index}] attempt {attempt} is not queued")
        assert (stage, index) not in self._by_index, "an index with two live attempts"  # the rule this class keeps
        st.set(index, S.LIVE)
        record = AttemptRecord(
            job=self.job.id, stage=stage, index=index, attempt=attempt, task_id=task_id, agent_id=agent_id,
            queued_at=self._queued_at.pop((stage, index), None), launched_at=now, spent=False,
            launched_seq=self._next_seq(),
        )
        self._live[task_id] = _Live(st, record)
        self._by_index[(stage, index)] = task_id
        out: list[Outcome] = [SaveAttempt(record)]
        if self.job.started_at is None:
            self.job.started_at = now
        if self.job.state == "PENDING":
            self.job.state = "RUNNING"
            out.append(SaveJob(self.job))
        return tuple(out)

    def live_tasks(self) -> tuple[tuple[str, str | None], ...]:
        """(task id, agent id) of every live attempt: what the core reconciles after a restart."""
        return tuple((t, lv.record.agent_id) for t, lv in self._live.items())

    # --- status updates ---------------------------------------------------------------------

    def status(self, task_id: str, state: TaskState, exit_code: int | None, reason: TaskReason | None,
               now: float) -> tuple[Outcome, ...]:
        live = self._live.get(task_id)
        ended = state.is_terminal or state == TaskState.UNKNOWN  # UNKNOWN: reconciliation's "no such task"
        if live is None:
            if ended:
                return (Ignored(task_id, "no live attempt has this task: its end is already recorded"),)
            return (KillTask(task_id, None, "stale: no live attempt has this task"),)
        rec = live.record
        rec.task_state, rec.task_reason = state.value, None if reason is None else reason.value
        if not ended:
            if state == TaskState.RUNNING and rec.state != "RUNNING":
                rec.state = "RUNNING"
                rec.running_at = rec.running_at if rec.running_at is not None else now
                rec.running_seq = self._next_seq()
                return (SaveAttempt(rec),)
            if state == TaskState.UNREACHABLE and rec.state != "UNREACHABLE":
                rec.state = "UNREACHABLE"
                return (SaveAttempt(rec),)
            return ()
        return self._ended(task_id, live, state, exit_code, reason, now)

    def _ended(self, task_id: str, live: _Live, state: TaskState, exit_code: int | None,
               reason: TaskReason | None, now: float) -> tuple[Outcome, ...]:
        st, rec = live.stage, live.record
        del self._live[task_id]
        del self._by_index[(st.name, rec.index)]
        rec.finished_at, rec.exit_code, rec.finished_seq = now, exit_code, self._next_seq()
        out: list[Outcome] = []
        failure = failure_reason(state, reason, live.killing)
        rec.failure = None if state == TaskState.FINISHED else failure
        if state == TaskState.FINISHED:
            rec.state = "FINISHED"
        else:
            rec.state = "LOST" if failure == "agent_lost" else "KILLED" if state == TaskState.KILLED else "FAILED"
        finished = state == TaskState.FINISHED
        if live.killing in _STOPS and not (finished and not st.spec.gang):
            rec.outcome = _STOPS[live.killing]
            out.append(SaveAttempt(rec))
            if live.killing == "stage_failed":
                st.set(rec.index, S.SKIPPED)
                self._fail_index_downstream(st, rec.index, out)
            else:  # suspended: runs again on resume; cancelled or deadline: `retry` may run it
                st.reopen(rec.index)
                for i in range(st.array) if st.spec.gang and st.counts[S.GANG_DONE] else ():
                    if st.status[i] == S.GANG_DONE:  # a gang reruns whole (also when replayed)
                        st.reopen(i)
        elif st.spec.gang and (not finished or st.gang_failure is not None):
            gang_member_ended(self, st, rec, failure, now, out)
        elif finished:
            rec.outcome = "finished" if st.spec.gang else "succeeded"  # a gang's success is the whole gang's
            out.append(SaveAttempt(rec))
            if st.spec.gang:
                st.set(rec.index, S.GANG_DONE)
                if st.counts[S.GANG_DONE] == st.array:
                    for i in range(st.array):
                        self._succeed(st, i, out)
            else:
                self._succeed(st, rec.index, out)
        else:
            self._failed(st, rec.index, rec, failure, now, out)
        self._settle(now, out)
        return tuple(out)

    def _succeed(self, st: StageRun, index: int, out: list[Outcome]) -> None:
        st.set(index, S.SUCCEEDED)
        out.append(IndexSucceeded(st.name, index))
        for name in self._down[st.name]:
            down = self.stages[name]
            if down.nn_count is not None and any(d.stage == st.name and d.condition == "n_to_n" for d in down.spec.depends_on):
                down.nn_count[index] += 1
                if down.nn_count[index] == down.nn_need and down.status[index] == S.PENDING:
                    down.nn_ready.append(index)

    def _failed(self, st: StageRun, index: int, rec: AttemptRecord, failure: str | None, now: float,
                out: list[Outcome]) -> None:
        retries = st.spec.retries
        action = retries.classify(rec.exit_code, failure)
        spent = action == "count"
        if spent:
            st.spent[index] += 1
            rec.spent = True
        if action in ("count", "ignore") and st.spent[index] < retries.attempts:
            at = now if failure == "agent_lost" else now + retries.backoff.delay(max(st.spent[index] - 1, 0))
            rec.outcome, rec.retry_at = ("lost" if failure == "agent_lost" else "retry"), at
            out.append(SaveAttempt(rec))
            st.backoff(index, at)
            out.append(RetryAt(st.name, index, st.tries[index] + 1, at, spent, failure or f"exit {rec.exit_code}"))
            return
        why = failure or f"exit {rec.exit_code}"
        rec.outcome = "stage_failed" if action == "fail_stage" else "index_failed"
        out.append(SaveAttempt(rec))
        self._fail_index(st, index, why, out)
        if action == "fail_stage":
            self._fail_stage(st, f"index {index} failed ({why}) and a rule says fail_stage", now, out)

    def _fail_index(self, st: StageRun, index: int, why: str, out: list[Outcome]) -> None:
        st.set(index, S.FAILED)
        out.append(IndexFailed(st.name, index, why))
        for name in self._down[st.name]:  # n_to_n: the same index downstream can never run
            down = self.stages[name]
            if down.nn_count is not None and down.status[index] == S.PENDING and any(
                d.stage == st.name and d.condition == "n_to_n" for d in down.spec.depends_on
            ):
                self._fail_index(down, index, f"upstream {st.name}[{index}] failed", out)

    def _fail_stage(self, st: StageRun, reason: str, now: float, out: list[Outcome]) -> None:
        st.state, st.reason = S.DONE_FAILED, reason
        self._stop(st, "stage_failed", now, out, skip=True)
        out.append(SaveStage(self.stage_record(st.name)))
        out.append(StageEnded(st.name, S.DONE_FAILED, reason))

    # --- timers -----------------------------------------------------------------------------

    def timeouts(self, now: float) -> Tick:
        """Tasks past their timeout (killed, then retried as ``timeout`` failures), kills to ask
        again, the job's deadline, and when to call again."""
        out: list[Outcome] = []
        next_at: float | None = None
        deadline = self.spec.deadline_seconds
        if deadline is not None and self.job.state not in ENDED and not self.job.suspended:
            if now >= self.job.clock_at + deadline:
                self._end("DEADLINE_EXCEEDED", f"deadline {self.spec.deadline} passed", now, out, "deadline")
            else:
                next_at = self.job.clock_at + deadline
        for task_id, lv in list(self._live.items()):
            rec, limit = lv.record, lv.stage.spec.timeout_seconds
            if lv.killing is not None:
                if lv.kill_at is None or now >= lv.kill_at + KILL_RETRY_SECONDS:  # None: asked before a restart
                    lv.kill_at = now
                    out.append(KillTask(task_id, rec.agent_id, f"{lv.killing}: kill asked again"))
                next_at = _min(next_at, (lv.kill_at or now) + KILL_RETRY_SECONDS)
                continue
            if limit is None:
                continue
            since, what = (rec.running_at, "RUNNING") if rec.running_at is not None else (rec.launched_at, "launch (never RUNNING)")
            if now >= since + limit:
                self._kill(task_id, lv, "timeout", f"timeout: {limit:g} s since {what}", now, out)
                next_at = _min(next_at, now + KILL_RETRY_SECONDS)
            else:
                next_at = _min(next_at, since + limit)
        if self.job.state not in ENDED and not self.job.suspended:
            for st in self.stages.values():  # when a backoff ends, ``ready`` has more to say
                if st.state == S.ACTIVE:
                    next_at = _min(next_at, st.due_retries(now, 0)[1] if not st.spec.gang else
                                   st.gang_due if st.gang_due is not None and st.gang_due > now else None)
        return Tick(tuple(out), next_at)

    # --- commands ---------------------------------------------------------------------------

    def suspend(self, now: float) -> tuple[Outcome, ...]:
        """Kubernetes ``suspend``: queued tasks are dropped, live ones killed and run again (free)
        on resume; the deadline stops."""
        if self.job.suspended or self.job.state in ENDED:
            return ()
        out: list[Outcome] = []
        self.job.suspended, self.job.state = True, "SUSPENDED"
        for st in self.stages.values():
            self._stop(st, "suspend", now, out, skip=False)
        out.insert(0, SaveJob(self.job))
        return tuple(out)

    def resume(self, now: float) -> tuple[Outcome, ...]:
        if not self.job.suspended or self.job.state in ENDED:
            return ()
        self.job.suspended, self.job.clock_at = False, now
        self.job.state = "PENDING" if self.job.started_at is None else "RUNNING"
        return (SaveJob(self.job),)

    def cancel(self, now: float, reason: str = "cancelled") -> tuple[Outcome, ...]:
        if self.job.state in ENDED:
            return ()
        out: list[Outcome] = []
        self._end("CANCELLED", reason, now, out, "cancel")
        return tuple(out)

    def retry_failed(self, now: float) -> tuple[Outcome, ...]:
        """``tepui jobs retry`` (Slurm ``scontrol requeue``): the failed and skipped indices run
        again with a fresh attempt budget; succeeded ones are kept. Only for a FAILED or
        DEADLINE_EXCEEDED job."""
        if self.job.state not in ("FAILED", "DEADLINE_EXCEEDED"):
            raise ValueError(f"job {self.job.id} is {self.job.state}: only a failed job can be retried")
        if self._live:
            raise ValueError(f"job {self.job.id} still has {len(self._live)} tasks being killed: retry when they end")
        for st in self.stages.values():
            for i in range(st.array):
                if st.status[i] in (S.FAILED, S.SKIPPED, S.BACKOFF):
                    st.spent[i] = 0
                    st.reopen(i)
            st.gang_due = None
            if st.state != S.DONE_OK:
                st.state, st.reason = S.WAITING, ""
        self.job.state = "RUNNING" if self.job.started_at is not None else "PENDING"
        self.job.finished_at, self.job.reason, self.job.clock_at = None, "", now
        self.job.retried_at.append(now)
        self.job.retried_seq.append(self._next_seq())
        out: list[Outcome] = [SaveJob(self.job)]
        self._settle(now, out)
        return tuple(out)

    # --- views ------------------------------------------------------------------------------

    def stage_record(self, name: str) -> StageRecord:
        """Counts for ``tepui jobs show``: pending includes waiting for a retry."""
        st = self.stages[name]
        c = st.counts
        return StageRecord(
            job=self.job.id, stage=name, state=st.state, pending=c[S.PENDING] + c[S.BACKOFF], queued=c[S.QUEUED],
            running=c[S.LIVE] + c[S.GANG_DONE], succeeded=c[S.SUCCEEDED], failed=c[S.FAILED], skipped=c[S.SKIPPED],
            reason=st.reason,
        )

    # --- restart ----------------------------------------------------------------------------

    @classmethod
    def from_records(cls, spec: JobSpec, job: JobRecord, attempts: Iterable[AttemptRecord]) -> JobRun:
        """Rebuild after a restart from the write-ahead store (:func:`.job_replay.rebuild`)."""
        from tepui.frameworks.batch.job_replay import rebuild  # it builds a JobRun: imported late

        return rebuild(cls, spec, job, attempts)

    # --- internals --------------------------------------------------------------------------

    @staticmethod
    def _give_back(st: StageRun, index: int) -> None:
        """A queued index back to pending, its try number unused."""
        st.tries[index] -= 1
        if st.tries[index] == 0:
            del st.tries[index]
        st.reopen(index)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _kill(self, task_id: str, live: _Live, why: str, message: str, now: float, out: list[Outcome]) -> None:
        live.killing, live.kill_at = why, now
        live.record.killed_by = why
        out.append(SaveAttempt(live.record))
        out.append(KillTask(task_id, live.record.agent_id, message))

    def _stop(self, st: StageRun, why: str, now: float, out: list[Outcome], *, skip: bool) -> None:
        """Kill a stage's live tasks, drop its queued ones; ``skip``: its pending indices never run."""
        for task_id, lv in list(self._live.items()):
            if lv.stage is st and lv.killing is None:
                self._kill(task_id, lv, why, why, now, out)
        for i in range(st.array):
            code = st.status[i]
            if code == S.QUEUED:
                out.append(Unqueue(st.name, i, st.tries[i]))
                self._give_back(st, i)
                if skip:
                    st.set(i, S.SKIPPED)
            elif skip and code in (S.PENDING, S.BACKOFF, S.GANG_DONE):
                st.set(i, S.SKIPPED)
                self._fail_index_downstream(st, i, out)
            elif not skip and code == S.GANG_DONE:
                st.reopen(i)  # MPI semantics: a gang reruns whole

    def _end(self, state: str, reason: str, now: float, out: list[Outcome], why: str) -> None:
        for st in self.stages.values():
            self._stop(st, why, now, out, skip=False)
        self.job.state, self.job.reason, self.job.finished_at = state, reason, now
        out.insert(0, SaveJob(self.job))
        out.append(JobEnded(state, reason))

    def _settle(self, now: float, out: list[Outcome]) -> None:
        """Open stages whose dependencies hold, end those that are done or can never run, end the
        job when every stage has ended. Stages in topological order: one pass suffices."""
        if self.job.state in ENDED:
            return
        for name in self.order:
            st = self.stages[name]
            if st.state == S.WAITING:
                verdict = self._dependencies(st)
                if verdict == "open":
                    st.state = S.ACTIVE
                elif verdict == "never":
                    st.state, st.reason = S.UPSTREAM_FAILED, "an upstream stage did not succeed"
                    self._stop(st, "stage_failed", now, out, skip=True)
                    out.append(SaveStage(self.stage_record(name)))
                    out.append(StageEnded(name, S.UPSTREAM_FAILED, st.reason))
            if st.state == S.ACTIVE and st.ended_indices() == st.array:
                ok = st.counts[S.SUCCEEDED] == st.array
                st.state = S.DONE_OK if ok else S.DONE_FAILED
                st.reason = "" if ok else f"{st.counts[S.FAILED]} of {st.array} indices failed"
                out.append(SaveStage(self.stage_record(name)))
                out.append(StageEnded(name, st.state, st.reason))
        if all(st.state in S.STAGE_ENDED for st in self.stages.values()):
            ok = all(st.state == S.DONE_OK for st in self.stages.values())
            failed = [n for n in self.order if self.stages[n].state != S.DONE_OK]
            self._end("SUCCEEDED" if ok else "FAILED", "" if ok else "stages did not succeed: " + ", ".join(failed),
                      now, out, "cancel")

    def _fail_index_downstream(self, st: StageRun, index: int, out: list[Outcome]) -> None:
        for name in self._down[st.name]:
            down = self.stages[name]
            if down.nn_count is not None and down.status[index] == S.PENDING and any(
                d.stage == st.name and d.condition == "n_to_n" for d in down.spec.depends_on
            ):
                self._fail_index(down, index, f"upstream {st.name}[{index}] did not run", out)

    def _dependencies(self, st: StageRun) -> str:
        """``open``, ``wait`` or ``never`` from the whole-stage conditions (n_to_n is per index)."""
        verdict = "open"
        for dep in st.spec.depends_on:
            up = self.stages[dep.stage].state
            if dep.condition == "n_to_n":
                if up == S.UPSTREAM_FAILED:
                    continue  # every index fails one by one (skipped upstream indices)
                continue
            if dep.condition == "any_finished":
                if up not in S.STAGE_ENDED:
                    verdict = "wait"
            elif up in (S.DONE_FAILED, S.UPSTREAM_FAILED):
                return "never"
            elif up != S.DONE_OK:
                verdict = "wait"
        return verdict


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)
