"""The batch core under random interleavings (hypothesis) of offers, status updates (ends,
duplicates, partitions), ticks, commands and restarts — a restart at any moment, even between
the store commit and the launch — through the :mod:`.batch_sim` harness, which fails any launch
of an index whose previous task has not ended (no index runs twice at the same time) and counts
the successes the store records. At the end everything is driven to its end: each index of a
job that SUCCEEDED was recorded a success exactly once, the queue holds nothing, and a restart
reads back the states the core had."""

from __future__ import annotations

import msgspec
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tepui.frameworks.batch.effects import Effect, Kill, Reconcile
from tepui.frameworks.batch.queue_values import QueueConfig, QueuesConfig
from tepui.frameworks.batch.spec import JobSpec
from tepui.sdk import TaskReason, TaskState

from tests.frameworks.batch.batch_sim import Sim, job, offer, only, stage

ENDINGS = [
    (TaskState.FINISHED, 0, None), (TaskState.FINISHED, 0, None), (TaskState.FINISHED, 0, None),
    (TaskState.FAILED, 1, None), (TaskState.FAILED, 3, None), (TaskState.LOST, None, TaskReason.AGENT_REMOVED),
    (TaskState.KILLED, None, None), (TaskState.FAILED, None, TaskReason.CONTAINER_LIMITATION_MEMORY),
    (TaskState.GONE, None, TaskReason.AGENT_REMOVED), (TaskState.DROPPED, None, None),
]

RETRIES = {"attempts": 3, "backoff": {"initial": "PT5S"}, "rules": [{"action": "fail_index", "on_exit_codes": {"values": [3]}}]}
SPECS = [
    job(stage("a", array=4, parallelism=2, timeout="PT30S", retries=RETRIES),
        stage("b", array=4, depends_on=[{"stage": "a", "condition": "n_to_n"}]),
        stage("c", depends_on=[{"stage": "b", "condition": "any_finished"}]), deadline="PT300S"),
    job(stage("g", array=3, gang=True, retries={"attempts": 2, "backoff": {"initial": "PT5S"}}),
        stage("h", array=2, depends_on=["g"]), ttl_after_finished="PT50S"),
    job(stage("s", array=5, resources={"cpus": 1, "mem": 64, "ports": 1},
              retries={"attempts": 2, "backoff": {"initial": "PT1S"}})),
]
QUEUES = [None, QueuesConfig((QueueConfig("default", max_running=3),))]  # no limit, or a tight one
USERS = ["ana", "bob"]


def answer_reconciliation(sim: Sim, effects: list[Effect], now: float, pick: int) -> None:
    """The master's answers to a subscription's reconciliation: a task it does not know is
    UNKNOWN; one it knows runs, or ended while the framework was away."""
    explicit = [r for r in only(effects, Reconcile) if r.tasks]
    for reconcile in explicit:
        for task_id, agent in reconcile.tasks:
            if task_id not in sim.world:
                sim.update(now, task_id, TaskState.UNKNOWN, reason=TaskReason.RECONCILIATION, agent=agent)
            elif pick % 5 == 0:
                sim.update(now, task_id, TaskState.FINISHED, exit_code=0, agent=agent)
            elif pick % 5 == 1:
                sim.update(now, task_id, TaskState.FAILED, exit_code=1, agent=agent)
            else:
                sim.update(now, task_id, TaskState.RUNNING, agent=agent)
    known = {t for r in explicit for t, _ in r.tasks}
    for task_id, agent in list(sim.world.items()):  # the implicit answer: tasks of ours we forgot
        if task_id not in known:
            sim.update(now, task_id, TaskState.RUNNING, agent=agent)


def drive_to_the_end(sim: Sim, now: float) -> Sim:
    killing: set[str] = set()
    for _ in range(60):
        for job_id, entry in list(sim.core.jobs.items()):
            if entry.record.state == "SUSPENDED":
                sim.command("resume", job_id, now)
        for task_id, agent in list(sim.world.items()):
            sim.update(now, task_id, TaskState.KILLED if task_id in killing else TaskState.RUNNING, agent=agent)
            if task_id in sim.world:
                sim.update(now, task_id, TaskState.FINISHED, exit_code=0, agent=agent)
        now += 40.0
        killing |= set(t.task_id for t in only(sim.tick(now), Kill))
        sim.offers(now, offer(f"end{now}", resources="cpus:16;mem:8192;ports:[31000-31100]"))
        if not sim.world and all(e.record.state in ("SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED")
                                 for e in sim.core.jobs.values()):
            break
    assert not sim.world
    return sim


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(QUEUES), st.lists(st.tuples(st.sampled_from(SPECS), st.sampled_from(USERS)), min_size=1, max_size=3),
       st.lists(st.tuples(st.sampled_from([0, 0, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7]), st.integers(0, 60)),
                min_size=20, max_size=80))
def test_no_index_runs_twice_and_each_success_is_recorded_once(
    queues: QueuesConfig | None, jobs: list[tuple[JobSpec, str]], steps: list[tuple[int, int]],
) -> None:
    sim = Sim(queues)
    sim.subscribe(0.0)
    now = 0.0
    for spec, user in jobs:
        sim.submit(spec, now, user=user)
    ended: list[str] = []
    for action, pick in steps:
        now += pick % 7
        if action == 0:  # offers of random sizes
            sim.offers(now, offer(f"o{now}-{pick}", agent=f"a{pick % 3}", resources=f"cpus:{1 + pick % 6};mem:2048;ports:[31000-3100{pick % 4}]"))
        elif action == 1 and sim.world:  # a task runs or ends
            task_id = sorted(sim.world)[pick % len(sim.world)]
            agent = sim.world[task_id]
            if pick % 4 == 0:
                sim.update(now, task_id, TaskState.RUNNING, agent=agent)
            else:
                state, code, reason = ENDINGS[pick % len(ENDINGS)]
                sim.update(now, task_id, state, exit_code=code, reason=reason, agent=agent)
                ended.append(task_id)
        elif action == 2 and ended:  # a duplicate end, or a partition
            sim.update(now, ended[pick % len(ended)], TaskState.FINISHED, exit_code=0)
            if sim.world:
                task_id = sorted(sim.world)[pick % len(sim.world)]
                sim.update(now, task_id, TaskState.UNREACHABLE, agent=sim.world[task_id])
        elif action == 3:
            sim.tick(now)
        elif action == 4 and sim.core.jobs:  # a command (refusals are fine)
            job_id = sorted(sim.core.jobs)[pick % len(sim.core.jobs)]
            name = ["suspend", "resume", "resume", "cancel", "retry", "retry", "delete"][pick % 7] if pick % 5 else "cancel"
            try:
                sim.command(name, job_id, now)
            except Exception as exc:  # noqa: BLE001  # only CommandError may escape
                assert type(exc).__name__ == "CommandError", exc
        elif action == 5:  # restart, then reconcile
            sim = sim.restarted(now)
            answer_reconciliation(sim, sim.subscribe(now), now, pick)
        elif action == 6:  # crash between the store commit and the launch
            sim.batch(sim.core.offers([offer(f"c{now}", resources="cpus:8;mem:4096")], now), execute=False)
            sim = sim.restarted(now)
            answer_reconciliation(sim, sim.subscribe(now), now, pick)
        elif action == 7:  # a job arrives later
            spec, user = jobs[pick % len(jobs)]
            sim.submit(spec, now, user=user)
        assert all(n == 1 for n in sim.successes.values()), sim.successes
        live = {t for e in sim.core.jobs.values() if e.run is not None for t, _ in e.run.live_tasks()}
        assert live == set(sim.world)  # the core knows every task that runs, and no other
        assert sim.core.queues.running_count() == len(live)  # each holds one queue slot
        for job_id, entry in sim.core.jobs.items():  # what the core knows is what it stored
            assert sim.store["jobs"][job_id] == msgspec.json.encode(entry.record)
            for task_id, lv in (entry.run._live.items() if entry.run is not None else ()):  # noqa: SLF001
                assert sim.store["attempts"][task_id] == msgspec.json.encode(lv.record)
    sim = drive_to_the_end(sim, now)
    assert all(n == 1 for n in sim.successes.values()), sim.successes
    for job_id, entry in sim.core.jobs.items():
        if entry.record.state == "SUCCEEDED":
            for s in entry.spec.stages:
                if not s.gang:
                    assert [sim.successes[(job_id, s.name, i)] for i in range(s.array)] == [1] * s.array
    assert sim.core.queues.running_count() == 0
    assert all(sim.core.queues.pending_count(j) == 0 for j in sim.core.jobs)
    states = {j: e.record.state for j, e in sim.core.jobs.items()}
    restarted = sim.restarted(now + 1)
    assert {j: e.record.state for j, e in restarted.core.jobs.items()} == states
    event(", ".join(sorted(states.values())))
