"""JobRun, the per-job state machine: exact outcomes on a fake clock (``now`` is passed in)."""

from __future__ import annotations

from typing import Any

import msgspec

import pytest

from tepui.frameworks.batch.job_run import BYTES_PER_PENDING_INDEX, JobRun
from tepui.frameworks.batch.records import AttemptRecord, JobRecord, StageRecord
from tepui.frameworks.batch.run_outcomes import (
    Ignored, IndexFailed, IndexSucceeded, JobEnded, KillTask, Ready, ReadySet, RetryAt, SaveAttempt, SaveJob,
    SaveStage, StageEnded, Tick, Unqueue,
)
from tepui.frameworks.batch.spec import JobSpec, load_job
from tepui.sdk import TaskReason, TaskState

F, R, K, L = TaskState.FINISHED, TaskState.RUNNING, TaskState.KILLED, TaskState.LOST


def job(*stages: dict[str, Any], **fields: Any) -> JobSpec:
    return load_job({"name": "j", "stages": list(stages), **fields})


def run_of(spec: JobSpec, now: float = 0.0) -> JobRun:
    return JobRun(spec, JobRecord(id="j1", name=spec.name, submitted_at=now, clock_at=now))


def start(run: JobRun, stage: str, index: int, now: float, agent: str = "a1") -> str:
    """Queue and launch the task the run says is ready, as the core would; returns its task id."""
    attempt = run.stages[stage].tries.get(index, 0) + 1
    assert Ready(stage, index, attempt) in run.ready(now).tasks
    run.queued(stage, index, attempt, now)
    task_id = f"{stage}-{index}-{attempt}"
    run.launched(stage, index, attempt, task_id, agent, now)
    return task_id


def gang_start(run: JobRun, stage: str, now: float) -> list[str]:
    """Queue the whole gang, then launch it (the queue places it all-or-nothing)."""
    tasks = run.ready(now).tasks
    for t in tasks:
        run.queued(t.stage, t.index, t.attempt, now)
    for t in tasks:
        run.launched(t.stage, t.index, t.attempt, f"{stage}-{t.index}-{t.attempt}", "a1", now)
    return [f"{stage}-{t.index}-{t.attempt}" for t in tasks]


def kinds(outcomes: tuple[Any, ...]) -> list[Any]:
    """The outcomes without the Save* records (checked separately)."""
    return [o for o in outcomes if not isinstance(o, SaveAttempt | SaveJob | SaveStage)]


def counts(run: JobRun, stage: str) -> tuple[int, int, int, int, int, int]:
    r = run.stage_record(stage)
    return r.pending, r.queued, r.running, r.succeeded, r.failed, r.skipped


# --- ready: DAG, parallelism, backoff ---------------------------------------------------------


def test_array_respects_parallelism_and_refills_as_tasks_end() -> None:
    run = run_of(job({"name": "m", "command": "true", "array": 5, "parallelism": 2}))
    assert run.ready(0) == ReadySet((Ready("m", 0, 1), Ready("m", 1, 1)), None)
    assert run.ready(0) == run.ready(0)  # asking again changes nothing
    t0 = start(run, "m", 0, 0)
    run.queued("m", 1, 1, 0)
    assert run.ready(0).tasks == ()  # queued + live = parallelism
    assert kinds(run.status(t0, F, 0, None, 5)) == [IndexSucceeded("m", 0)]
    assert run.ready(5).tasks == (Ready("m", 2, 1),)
    assert counts(run, "m") == (3, 1, 0, 1, 0, 0)


def test_all_succeeded_dependency_opens_after_every_index_and_the_job_succeeds() -> None:
    run = run_of(job({"name": "map", "command": "true", "array": 2},
                     {"name": "reduce", "command": "true", "depends_on": ["map"]}))
    a, b = start(run, "map", 0, 0), start(run, "map", 1, 0)
    assert kinds(run.status(a, F, 0, None, 1)) == [IndexSucceeded("map", 0)]
    assert run.ready(1).tasks == ()
    assert kinds(run.status(b, F, 0, None, 2)) == [IndexSucceeded("map", 1), StageEnded("map", "SUCCEEDED", "")]
    c = start(run, "reduce", 0, 2)
    out = run.status(c, F, 0, None, 3)
    assert kinds(out) == [IndexSucceeded("reduce", 0), StageEnded("reduce", "SUCCEEDED", ""), JobEnded("SUCCEEDED", "")]
    assert run.job.state == "SUCCEEDED" and run.job.finished_at == 3 and run.job.started_at == 0
    assert run.ready(3) == ReadySet((), None)


def test_failed_upstream_fails_all_succeeded_dependents_but_runs_any_finished_ones() -> None:
    run = run_of(job({"name": "map", "command": "true"},
                     {"name": "reduce", "command": "true", "depends_on": ["map"]},
                     {"name": "report", "command": "true", "depends_on": [{"stage": "map", "condition": "any_finished"}]}))
    t = start(run, "map", 0, 0)
    out = run.status(t, TaskState.FAILED, 1, None, 1)
    assert kinds(out) == [
        IndexFailed("map", 0, "exit 1"), StageEnded("map", "FAILED", "1 of 1 indices failed"),
        StageEnded("reduce", "UPSTREAM_FAILED", "an upstream stage did not succeed"),
    ]
    assert counts(run, "reduce") == (0, 0, 0, 0, 0, 1)
    assert [o.record for o in out if isinstance(o, SaveStage)] == [
        StageRecord(job="j1", stage="map", state="FAILED", pending=0, queued=0, running=0, succeeded=0, failed=1,
                    skipped=0, reason="1 of 1 indices failed"),
        StageRecord(job="j1", stage="reduce", state="UPSTREAM_FAILED", pending=0, queued=0, running=0, succeeded=0,
                    failed=0, skipped=1, reason="an upstream stage did not succeed"),
    ]
    assert run.ready(1).tasks == (Ready("report", 0, 1),)
    t = start(run, "report", 0, 1)
    out = run.status(t, F, 0, None, 2)
    assert out[-1] == JobEnded("FAILED", "stages did not succeed: map, reduce")
    assert run.job.state == "FAILED"


def test_n_to_n_index_waits_for_its_own_upstream_index_and_fails_with_it() -> None:
    run = run_of(job({"name": "a", "command": "true", "array": 3},
                     {"name": "b", "command": "true", "array": 3, "depends_on": [{"stage": "a", "condition": "n_to_n"}]}))
    ts = [start(run, "a", i, 0) for i in range(3)]
    run.status(ts[2], F, 0, None, 1)
    assert run.ready(1).tasks == (Ready("b", 2, 1),)
    out = run.status(ts[0], TaskState.FAILED, 3, None, 2)
    assert kinds(out) == [IndexFailed("a", 0, "exit 3"), IndexFailed("b", 0, "upstream a[0] failed")]
    run.status(ts[1], F, 0, None, 3)
    assert [t.index for t in run.ready(3).tasks] == [2, 1]


# --- retries ----------------------------------------------------------------------------------


def test_counted_failure_retries_after_the_backoff_then_the_index_fails() -> None:
    run = run_of(job({"name": "m", "command": "x", "retries": {"attempts": 2, "backoff": {"initial": "PT10S"}}}))
    t = start(run, "m", 0, 0)
    run.status(t, R, None, None, 1)
    out = run.status(t, TaskState.FAILED, 2, None, 5)
    assert kinds(out) == [RetryAt("m", 0, 2, 15.0, True, "exit 2")]
    rec = out[0].record  # type: ignore[union-attr]
    assert (rec.state, rec.exit_code, rec.outcome, rec.spent, rec.retry_at, rec.running_at) == ("FAILED", 2, "retry", True, 15.0, 1)
    assert run.ready(10) == ReadySet((), 15.0)
    assert run.timeouts(10) == Tick((), 15.0)
    t2 = start(run, "m", 0, 15)
    assert t2 == "m-0-2"
    out = run.status(t2, TaskState.FAILED, 2, None, 20)
    assert kinds(out)[:2] == [IndexFailed("m", 0, "exit 2"), StageEnded("m", "FAILED", "1 of 1 indices failed")]
    assert run.job.state == "FAILED"


def test_agent_loss_is_retried_at_once_without_spending_an_attempt() -> None:
    run = run_of(job({"name": "m", "command": "x"}))  # attempts 1: no counted retry
    t = start(run, "m", 0, 0)
    out = run.status(t, TaskState.GONE, None, TaskReason.AGENT_REMOVED, 7)
    assert kinds(out) == [RetryAt("m", 0, 2, 7, False, "agent_lost")]
    assert out[0].record.state == "LOST"  # type: ignore[union-attr]
    t2 = start(run, "m", 0, 7, agent="a2")
    assert kinds(run.status(t2, F, 0, None, 8)) == [
        IndexSucceeded("m", 0), StageEnded("m", "SUCCEEDED", ""), JobEnded("SUCCEEDED", "")]


def test_unreachable_keeps_the_attempt_live_so_the_index_never_runs_twice() -> None:
    run = run_of(job({"name": "m", "command": "x"}))
    t = start(run, "m", 0, 0)
    out = run.status(t, TaskState.UNREACHABLE, None, TaskReason.AGENT_DISCONNECTED, 3)
    assert out[0].record.state == "UNREACHABLE"  # type: ignore[union-attr]
    assert run.ready(100).tasks == ()
    assert counts(run, "m") == (0, 0, 1, 0, 0, 0)


def test_rules_fail_index_ignore_and_fail_stage() -> None:
    rules = [{"action": "fail_index", "on_exit_codes": {"values": [3]}},
             {"action": "ignore", "on_reasons": ["preempted"]},
             {"action": "fail_stage", "on_exit_codes": {"values": [4]}}]
    run = run_of(job({"name": "m", "command": "x", "array": 3, "parallelism": 2,
                      "retries": {"attempts": 5, "rules": rules, "backoff": {"initial": "PT1S"}}}))
    a, b = start(run, "m", 0, 0), start(run, "m", 1, 0)
    assert kinds(run.status(a, TaskState.FAILED, 3, None, 1)) == [IndexFailed("m", 0, "exit 3")]
    assert kinds(run.status(b, TaskState.FAILED, None, TaskReason.CONTAINER_PREEMPTED, 1)) == [
        RetryAt("m", 1, 2, 2.0, False, "preempted")]
    c = start(run, "m", 2, 1)
    run.queued("m", 1, 2, 2)
    out = run.status(c, TaskState.FAILED, 4, None, 3)
    assert kinds(out) == [
        IndexFailed("m", 2, "exit 4"), Unqueue("m", 1, 2),
        StageEnded("m", "FAILED", "index 2 failed (exit 4) and a rule says fail_stage"),
        JobEnded("FAILED", "stages did not succeed: m"),
    ]
    assert counts(run, "m") == (0, 0, 0, 0, 2, 1)


def test_same_terminal_update_twice_records_success_once() -> None:
    run = run_of(job({"name": "m", "command": "x", "array": 2}))
    t = start(run, "m", 0, 0)
    assert kinds(run.status(t, F, 0, None, 1)) == [IndexSucceeded("m", 0)]
    assert run.status(t, F, 0, None, 2) == (Ignored(t, "no live attempt has this task: its end is already recorded"),)
    assert run.status("ghost", R, None, None, 2) == (KillTask("ghost", None, "stale: no live attempt has this task"),)
    assert counts(run, "m") == (1, 0, 0, 1, 0, 0)


# --- timeouts and deadline --------------------------------------------------------------------


def test_timeout_runs_from_running_or_from_launch_and_the_kill_is_a_timeout_failure() -> None:
    run = run_of(job({"name": "m", "command": "x", "array": 2, "timeout": "PT60S",
                      "retries": {"attempts": 2, "backoff": {"initial": "PT5S"}}}))
    a, b = start(run, "m", 0, 0), start(run, "m", 1, 0)
    run.status(a, R, None, None, 10)
    assert run.timeouts(30) == Tick((), 60.0)
    tick = run.timeouts(60)
    assert kinds(tick.outcomes) == [KillTask(b, "a1", "timeout: 60 s since launch (never RUNNING)")]
    assert tick.next_at == 70.0
    tick = run.timeouts(70)
    assert kinds(tick.outcomes) == [KillTask(a, "a1", "timeout: 60 s since RUNNING")]
    assert run.timeouts(95) == Tick((KillTask(b, "a1", "timeout: kill asked again"),), 100.0)
    out = run.status(b, K, None, None, 101)
    assert kinds(out) == [RetryAt("m", 1, 2, 106.0, True, "timeout")]
    assert out[0].record.failure == "timeout" and out[0].record.killed_by == "timeout"  # type: ignore[union-attr]


def test_deadline_kills_everything_and_ends_the_job() -> None:
    run = run_of(job({"name": "m", "command": "x", "array": 3, "parallelism": 2}, deadline="PT100S"), now=0)
    a = start(run, "m", 0, 0)
    run.queued("m", 1, 1, 0)
    assert run.timeouts(50) == Tick((), 100.0)
    tick = run.timeouts(100)
    assert kinds(tick.outcomes) == [KillTask(a, "a1", "deadline"), Unqueue("m", 1, 1),
                                    JobEnded("DEADLINE_EXCEEDED", "deadline PT100S passed")]
    assert run.job.state == "DEADLINE_EXCEEDED"
    assert run.ready(100).tasks == ()
    out = run.status(a, K, None, None, 101)
    assert out[0].record.outcome == "deadline"  # type: ignore[union-attr]
    assert counts(run, "m") == (3, 0, 0, 0, 0, 0)
    run.retry_failed(200)  # the timed-out indices run again; the deadline restarts
    assert run.ready(200).tasks == (Ready("m", 0, 2), Ready("m", 1, 1))
    assert run.timeouts(250) == Tick((), 300.0)


# --- suspend, cancel, retry -------------------------------------------------------------------


def test_suspend_kills_and_requeues_free_resume_restarts_the_deadline() -> None:
    run = run_of(job({"name": "m", "command": "x", "array": 2}, deadline="PT100S"))
    a = start(run, "m", 0, 0)
    run.queued("m", 1, 1, 0)
    out = run.suspend(10)
    assert kinds(out) == [KillTask(a, "a1", "suspend"), Unqueue("m", 1, 1)]
    assert run.job.state == "SUSPENDED" and run.ready(10) == ReadySet((), None)
    run.status(a, K, None, None, 11)
    assert run.timeouts(500) == Tick((), None)
    assert counts(run, "m") == (2, 0, 0, 0, 0, 0)
    assert run.resume(20) == (SaveJob(run.job),)
    assert run.job.state == "RUNNING" and run.job.clock_at == 20
    assert run.ready(20).tasks == (Ready("m", 0, 2), Ready("m", 1, 1))
    assert run.stages["m"].spent[0] == 0


def test_spec_suspend_starts_suspended() -> None:
    run = run_of(job({"name": "m", "command": "x"}, suspend=True))
    assert run.job.state == "SUSPENDED" and run.ready(0).tasks == ()
    run.resume(5)
    assert run.job.state == "PENDING" and run.ready(5).tasks == (Ready("m", 0, 1),)


def test_cancel_ends_the_job_and_a_late_success_is_still_recorded_once() -> None:
    run = run_of(job({"name": "m", "command": "x", "array": 2}))
    a, b = start(run, "m", 0, 0), start(run, "m", 1, 0)
    out = run.cancel(5)
    assert kinds(out) == [KillTask(a, "a1", "cancel"), KillTask(b, "a1", "cancel"), JobEnded("CANCELLED", "cancelled")]
    assert kinds(run.status(a, F, 0, None, 6)) == [IndexSucceeded("m", 0)]
    assert run.status(b, K, None, None, 6)[0].record.outcome == "cancelled"  # type: ignore[union-attr]
    assert run.job.state == "CANCELLED" and run.cancel(7) == ()
    with pytest.raises(ValueError):
        run.retry_failed(8)


def test_retry_failed_reruns_only_the_failed_indices_with_a_fresh_budget() -> None:
    run = run_of(job({"name": "m", "command": "x", "array": 3},
                     {"name": "r", "command": "x", "depends_on": ["m"]}))
    ts = [start(run, "m", i, 0) for i in range(3)]
    run.status(ts[0], F, 0, None, 1)
    run.status(ts[1], TaskState.FAILED, 1, None, 1)
    run.status(ts[2], F, 0, None, 1)
    assert run.job.state == "FAILED"
    out = run.retry_failed(10)
    assert out == (SaveJob(run.job),) and run.job.state == "RUNNING" and run.job.retried_at == [10]
    assert run.ready(10).tasks == (Ready("m", 1, 2),)
    assert counts(run, "r") == (1, 0, 0, 0, 0, 0)
    t = start(run, "m", 1, 10)
    run.status(t, F, 0, None, 11)
    assert run.ready(11).tasks == (Ready("r", 0, 1),)


# --- gangs ------------------------------------------------------------------------------------


def test_gang_is_ready_whole_and_a_failure_kills_and_retries_the_whole_gang_once() -> None:
    run = run_of(job({"name": "g", "command": "mpirun", "array": 3, "gang": True,
                      "retries": {"attempts": 2, "backoff": {"initial": "PT10S"}}}))
    assert run.ready(0) == ReadySet(tuple(Ready("g", i, 1) for i in range(3)), None, ("g",))
    ts = gang_start(run, "g", 0)
    assert run.ready(0).tasks == ()
    out = run.status(ts[2], F, 0, None, 4)  # finished, but the gang has not: not a success yet
    assert kinds(out) == [] and out[0].record.outcome == "finished"  # type: ignore[union-attr]
    out = run.status(ts[0], TaskState.FAILED, 1, None, 5)
    assert kinds(out) == [KillTask(ts[1], "a1", "gang: g[0] ended (exit 1)")]
    out = run.status(ts[1], K, None, None, 6)
    assert kinds(out) == [RetryAt("g", i, 2, 16.0, True, "exit 1") for i in range(3)]
    assert counts(run, "g") == (3, 0, 0, 0, 0, 0)
    assert run.ready(10) == ReadySet((), 16.0)
    assert run.ready(16).tasks == tuple(Ready("g", i, 2) for i in range(3))
    ts = gang_start(run, "g", 16)
    assert kinds(run.status(ts[0], F, 0, None, 20)) == []
    assert kinds(run.status(ts[1], F, 0, None, 20)) == []
    out = run.status(ts[2], F, 0, None, 21)
    assert kinds(out)[:3] == [IndexSucceeded("g", 0), IndexSucceeded("g", 1), IndexSucceeded("g", 2)]
    assert run.job.state == "SUCCEEDED"



# --- restart ----------------------------------------------------------------------------------


class Store:
    """What the shell writes: the latest copy of each record, as decoded after a restart."""

    def __init__(self) -> None:
        self.attempts: dict[str, bytes] = {}
        self.job: bytes = b""

    def keep(self, outcomes: tuple[Any, ...]) -> tuple[Any, ...]:
        for o in outcomes:
            if isinstance(o, SaveAttempt):
                self.attempts[o.record.task_id] = msgspec.json.encode(o.record)
            elif isinstance(o, SaveJob):
                self.job = msgspec.json.encode(o.record)
        return outcomes

    def load(self, spec: JobSpec) -> JobRun:
        job = msgspec.json.decode(self.job, type=JobRecord)
        attempts = [msgspec.json.decode(b, type=AttemptRecord) for b in self.attempts.values()]
        return JobRun.from_records(spec, job, attempts)


def test_restart_rebuilds_from_records_and_reconciliation_never_runs_an_index_twice() -> None:
    spec = job({"name": "m", "command": "x", "array": 4, "parallelism": 3,
                "retries": {"attempts": 3, "backoff": {"initial": "PT10S"}}},
               {"name": "r", "command": "x", "depends_on": ["m"]})
    run, store = run_of(spec), Store()
    store.job = msgspec.json.encode(run.job)
    ts = []
    for i in range(3):
        run.queued("m", i, 1, 0)
        ts.append(f"m-{i}-1")
        store.keep(run.launched("m", i, 1, ts[-1], "a1", 0))
    store.keep(run.status(ts[0], R, None, None, 1))
    store.keep(run.status(ts[0], F, 0, None, 2))  # index 0 succeeded
    store.keep(run.status(ts[1], TaskState.FAILED, 1, None, 3))  # index 1: retry at 13, one attempt spent
    run.queued("m", 3, 1, 3)  # queued only: soft state, lost with the restart
    before = run.stage_record("m")

    again = store.load(spec)
    assert again.stage_record("m") == msgspec.structs.replace(before, pending=before.pending + 1, queued=0)
    assert again.live_tasks() == ((ts[2], "a1"),)
    assert again.ready(3) == ReadySet((Ready("m", 3, 1),), 13.0)
    assert again.stages["m"].spent[1] == 1
    # reconciliation: index 0's end again is ignored; index 2's task is unknown to the master
    assert again.status(ts[0], F, 0, None, 20) == (Ignored(ts[0], "no live attempt has this task: its end is already recorded"),)
    out = again.status(ts[2], TaskState.LOST, None, TaskReason.RECONCILIATION, 20)
    assert kinds(out) == [RetryAt("m", 2, 2, 20, False, "agent_lost")]
    assert again.ready(20).tasks == (Ready("m", 1, 2), Ready("m", 2, 2), Ready("m", 3, 1))
    assert again.job == run.job


def test_restart_keeps_suspension_retries_and_kills_in_flight() -> None:
    spec = job({"name": "m", "command": "x", "array": 2, "timeout": "PT5S"})
    run, store = run_of(spec), Store()
    store.job = msgspec.json.encode(run.job)
    a = start(run, "m", 0, 0)
    store.keep(run.status(a, R, None, None, 1))
    store.keep(run.timeouts(6).outcomes)
    again = store.load(spec)
    assert again.timeouts(7) == Tick((KillTask(a, "a1", "timeout: kill asked again"),), 37.0)
    assert kinds(again.status(a, K, None, None, 8)) == [IndexFailed("m", 0, "timeout")]


# --- memory and bounded answers ---------------------------------------------------------------


def test_a_pending_index_costs_bytes_not_objects() -> None:
    import tracemalloc

    spec = job({"name": "m", "command": "x", "array": 100_000})
    tracemalloc.start()
    run = run_of(spec)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert used / 100_000 < BYTES_PER_PENDING_INDEX + 0.5, used
    assert run.ready(0, limit=3).tasks == (Ready("m", 0, 1), Ready("m", 1, 1), Ready("m", 2, 1))
    assert len(run.ready(0).tasks) == 100_000


def test_a_gang_member_lost_with_its_agent_reruns_the_gang_at_once_without_spending() -> None:
    run = run_of(job({"name": "g", "command": "mpirun", "array": 2, "gang": True}))  # attempts 1
    assert run.ready(0, limit=1).gangs == ("g",)  # a gang counts as one against the limit
    a, b = gang_start(run, "g", 0)
    out = run.status(b, TaskState.GONE, None, TaskReason.AGENT_REMOVED, 3)
    assert kinds(out) == [KillTask(a, "a1", "gang: g[1] ended (agent_lost)")]
    assert [(o.record.outcome, o.record.spent) for o in out if isinstance(o, SaveAttempt)] == [
        ("gang_failed", False), ("", False)]  # a loss spends nothing
    out = run.status(a, K, None, None, 4)
    assert kinds(out) == [RetryAt("g", 0, 2, 4, False, "agent_lost"), RetryAt("g", 1, 2, 4, False, "agent_lost")]
    assert run.ready(4).tasks == (Ready("g", 0, 2), Ready("g", 1, 2))
    assert list(run.stages["g"].spent) == [0, 0]


def test_a_gang_failure_with_no_attempt_left_fails_every_index() -> None:
    run = run_of(job({"name": "g", "command": "mpirun", "array": 2, "gang": True}))
    a, b = gang_start(run, "g", 0)
    first = run.status(a, TaskState.FAILED, 2, None, 1)
    assert [(o.record.outcome, o.record.spent) for o in first if isinstance(o, SaveAttempt)] == [
        ("gang_failed", True), ("", False)]  # the first failure's record spends the gang's try
    out = run.status(b, K, None, None, 2)
    assert [(o.record.outcome, o.record.spent) for o in out if isinstance(o, SaveAttempt)] == [("gang", False)]
    assert kinds(out) == [
        IndexFailed("g", 0, "gang failed (exit 2)"), IndexFailed("g", 1, "gang failed (exit 2)"),
        StageEnded("g", "FAILED", "2 of 2 indices failed"), JobEnded("FAILED", "stages did not succeed: g"),
    ]


def test_reconciliation_unknown_ends_a_live_attempt_as_lost() -> None:
    run = run_of(job({"name": "m", "command": "x"}))
    t = start(run, "m", 0, 0)
    out = run.status(t, TaskState.UNKNOWN, None, TaskReason.RECONCILIATION, 9)
    assert kinds(out) == [RetryAt("m", 0, 2, 9, False, "agent_lost")]
    assert run.status(t, TaskState.UNKNOWN, None, TaskReason.RECONCILIATION, 9)[0] == Ignored(
        t, "no live attempt has this task: its end is already recorded")


def test_unqueued_gives_the_index_back_and_a_backoff_cannot_be_jumped() -> None:
    run = run_of(job({"name": "m", "command": "x", "retries": {"attempts": 2, "backoff": {"initial": "PT10S"}}}))
    run.queued("m", 0, 1, 0)
    run.unqueued("m", 0, 1)
    assert run.ready(0).tasks == (Ready("m", 0, 1),)
    t = start(run, "m", 0, 1)
    run.status(t, TaskState.FAILED, 1, None, 2)
    with pytest.raises(ValueError):
        run.queued("m", 0, 2, 5)  # the backoff ends at 12
    run.queued("m", 0, 2, 12)
    with pytest.raises(ValueError):
        run.launched("m", 0, 1, "x", "a1", 12)  # not the queued try
