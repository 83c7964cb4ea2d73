"""Properties of JobRun under random event orders (hypothesis): no index ever has two live
attempts, each index's success is recorded at most once, and no index spends more attempts than
``retries.attempts`` — through duplicates, losses, timeouts, suspension, gangs and restarts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tepui.frameworks.batch.job_run import JobRun
from tepui.frameworks.batch.records import AttemptRecord, JobRecord
from tepui.frameworks.batch.run_outcomes import IndexSucceeded, KillTask, SaveAttempt, SaveJob, Unqueue
from tepui.frameworks.batch.spec import load_job
from tepui.sdk import TaskReason, TaskState

ENDINGS = [
    (TaskState.FINISHED, 0, None), (TaskState.FINISHED, 0, None), (TaskState.FINISHED, 0, None), (TaskState.FAILED, 1, None), (TaskState.FAILED, 3, None),
    (TaskState.LOST, None, TaskReason.AGENT_REMOVED), (TaskState.KILLED, None, None),
    (TaskState.FAILED, None, TaskReason.CONTAINER_LIMITATION_MEMORY),
    (TaskState.UNKNOWN, None, TaskReason.RECONCILIATION),
]

SPECS = [
    [{"name": "a", "command": "x", "array": 4, "parallelism": 2, "timeout": "PT30S",
      "retries": {"attempts": 3, "backoff": {"initial": "PT5S"},
                  "rules": [{"action": "fail_index", "on_exit_codes": {"values": [3]}}]}},
     {"name": "b", "command": "x", "array": 4, "depends_on": [{"stage": "a", "condition": "n_to_n"}]},
     {"name": "c", "command": "x", "depends_on": [{"stage": "b", "condition": "any_finished"}]}],
    [{"name": "g", "command": "x", "array": 3, "gang": True, "retries": {"attempts": 2, "backoff": {"initial": "PT5S"}}},
     {"name": "h", "command": "x", "array": 2, "depends_on": ["g"]}],
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SPECS), st.lists(st.tuples(st.sampled_from([0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 4, 5, 6, 7]), st.integers(0, 50)), min_size=30, max_size=120))
def test_no_index_runs_twice_success_once_budget_kept(stages: list[dict[str, Any]], steps: list[tuple[int, int]]) -> None:
    spec = load_job({"name": "p", "deadline": "PT200S", "stages": stages})
    run = JobRun(spec, JobRecord(id="p", name="p"))
    stored_job = msgspec.json.encode(run.job)
    stored: dict[str, bytes] = {}
    world: dict[str, tuple[str, int]] = {}  # tasks running on agents (killed ones until they end)
    queued: list[tuple[str, int, int]] = []
    ended: list[str] = []
    successes: Counter[tuple[str, int]] = Counter()
    now, serial = 0.0, 0

    def take(outcomes: Any) -> None:
        nonlocal stored_job
        for o in outcomes if not hasattr(outcomes, "outcomes") else outcomes.outcomes:
            if isinstance(o, SaveAttempt):
                stored[o.record.task_id] = msgspec.json.encode(o.record)
            elif isinstance(o, SaveJob):
                stored_job = msgspec.json.encode(o.record)
            elif isinstance(o, IndexSucceeded):
                successes[(o.stage, o.index)] += 1
            elif isinstance(o, Unqueue):
                queued.remove((o.stage, o.index, o.attempt))
            elif isinstance(o, KillTask):
                pass  # the task ends when the world says so

    for action, pick in steps:
        now += pick % 7
        if action == 0:  # the queue takes what is ready (a gang whole)
            for t in run.ready(now).tasks:
                run.queued(t.stage, t.index, t.attempt, now)
                queued.append((t.stage, t.index, t.attempt))
        elif action == 1 and queued:  # the core launches what the queue placed
            batch = queued[:] if spec.stage(queued[0][0]).gang else [queued[pick % len(queued)]]
            for stage, index, attempt in batch:
                queued.remove((stage, index, attempt))
                serial += 1
                task_id = f"t{serial}"
                assert (stage, index) not in world.values(), "two live attempts of one index"
                world[task_id] = (stage, index)
                take(run.launched(stage, index, attempt, task_id, "a1", now))
        elif action == 2 and world:  # a task ends
            task_id = sorted(world)[pick % len(world)]
            state, code, reason = ENDINGS[pick % len(ENDINGS)]
            del world[task_id]
            ended.append(task_id)
            take(run.status(task_id, state, code, reason, now))
        elif action == 3 and ended:  # a duplicate terminal update (reconciliation), or a partition
            task_id = ended[pick % len(ended)]
            take(run.status(task_id, TaskState.FINISHED, 0, None, now))
            if world:
                take(run.status(sorted(world)[pick % len(world)], TaskState.UNREACHABLE, None, None, now))
        elif action == 4:
            take(run.timeouts(now))
        elif action == 5:
            take(run.suspend(now) if pick % 4 == 0 else run.resume(now))
        elif action == 6:  # the framework restarts: queue lost, live tasks reconciled
            queued.clear()
            attempts = [msgspec.json.decode(b, type=AttemptRecord) for b in stored.values()]
            run = JobRun.from_records(spec, msgspec.json.decode(stored_job, type=JobRecord), attempts)
            assert {t for t, _ in run.live_tasks()} == set(world)
        elif action == 7 and run.job.state in ("FAILED", "DEADLINE_EXCEEDED") and not world:
            take(run.retry_failed(now))
        for s in spec.stages:
            assert max(run.stages[s.name].spent, default=0) <= s.retries.attempts
        assert all(n == 1 for n in successes.values()), successes
        assert {t for t, _ in run.live_tasks()} == set(world)
    event(f"job {run.job.state}, {sum(successes.values())} successes")
