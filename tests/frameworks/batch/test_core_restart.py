"""The batch core restarted from what it stored (:func:`~tepui.frameworks.batch.loading.load_jobs`,
as the shell does): live attempts reconciled, an attempt the master does not know retried free,
an end arriving after the restart recorded once, kills asked again (harness: :mod:`.batch_sim`)."""

from __future__ import annotations

import pytest

from tepui.frameworks.batch.effects import Demand, Kill, Launch, Reconcile
from tepui.frameworks.batch.loading import load_jobs, wants_attempts
from tepui.frameworks.batch.records import JobRecord
from tepui.sdk import TaskReason, TaskState

from tests.frameworks.batch.batch_sim import MASTER, Sim, job, kinds, launched_ids, offer, only, stage
from tests.frameworks.batch.test_core import RETRY, running_job

def test_load_jobs_reads_back_what_was_stored_and_skips_attempts_of_jobs_that_never_change() -> None:
    sim = Sim()
    running_job(sim, job(stage("s", array=2)))
    sim.submit(job(), 2.0)
    sim.offers(3.0, offer("o1"))
    sim.finish(4.0, "j-2.s.0.1")
    framework_id, loaded = load_jobs(sim.store)
    assert framework_id == "fw"
    assert [(r.id, r.state, None if a is None else [x.task_id for x in a], [s.stage for s in st])
            for _, r, a, st in loaded] == [
        ("j-1", "RUNNING", ["j-1.s.0.1", "j-1.s.1.1"], []),
        ("j-2", "SUCCEEDED", None, ["s"]),
    ]
    assert loaded[0][0] == sim.core.jobs["j-1"].spec
    assert [wants_attempts(JobRecord(id="x", name="x", state=s)) for s in
            ("PENDING", "RUNNING", "SUSPENDED", "SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED")] == [
        True, True, True, False, True, True, True]
    assert load_jobs({}) == (None, [])


def test_a_restart_mid_job_reconciles_the_live_tasks_and_resumes_without_duplicates() -> None:
    sim = Sim()
    running_job(sim, job(stage("s", array=4)))
    sim.offers(2.0, offer("o1"))  # 4 launched
    sim.update(3.0, "j-1.s.0.1", TaskState.RUNNING)
    sim.finish(3.0, "j-1.s.1.1")
    sim = sim.restarted(10.0)
    assert sim.core.queues.running_count() == 3
    effects = sim.subscribe(10.0)
    assert effects == [
        Reconcile((("j-1.s.0.1", "a1"), ("j-1.s.2.1", "a1"), ("j-1.s.3.1", "a1"))),
        Reconcile(()),
        Demand((), revive=False),
    ]
    # The master's answers: 0 still runs, 1's FINISHED again (already recorded), 2 finished while we
    # were away, 3 never reached the agent (its launch was lost).
    assert sim.update(11.0, "j-1.s.0.1", TaskState.RUNNING) == []
    assert sim.update(11.0, "j-1.s.1.1", TaskState.FINISHED, exit_code=0) == []
    sim.update(11.0, "j-1.s.2.1", TaskState.FINISHED, exit_code=0)
    effects = sim.update(11.0, "j-1.s.3.1", TaskState.UNKNOWN, reason=TaskReason.RECONCILIATION)
    lost = sim.attempt("j-1.s.3.1")
    assert (lost.state, lost.outcome, lost.spent) == ("LOST", "lost", False)
    assert sim.core.queues.pending_count("j-1") == 1
    assert launched_ids(sim.offers(12.0, offer("o2"))) == ["j-1.s.3.2"]
    sim.finish(13.0, "j-1.s.0.1", "j-1.s.3.2")
    assert sim.state("j-1") == "SUCCEEDED"
    assert sim.successes == {("j-1", "s", 0): 1, ("j-1", "s", 1): 1, ("j-1", "s", 2): 1, ("j-1", "s", 3): 1}


def test_a_restart_before_any_launch_queues_the_job_again_and_repeats_an_unconfirmed_kill() -> None:
    sim = Sim()
    running_job(sim, job(stage("a"), stage("b", array=2), deadline="PT1000S"))
    sim.offers(2.0, offer("o1"))  # a only
    sim.command("suspend", "j-1", 3.0)
    assert sim.attempt("j-1.a.0.1").killed_by == "suspend"
    sim = sim.restarted(4.0)
    assert kinds(sim.subscribe(4.0)) == ["Reconcile", "Reconcile", "Demand"]  # the kill, then implicit
    assert sim.tick(4.0)[:1] == [Kill("j-1.a.0.1", "a1")]  # asked again after the restart
    sim.update(5.0, "j-1.a.0.1", TaskState.KILLED)
    assert sim.attempt("j-1.a.0.1").outcome == "suspended"
    sim.command("resume", "j-1", 6.0)
    assert launched_ids(sim.offers(7.0, offer("o2"))) == ["j-1.a.0.2"]
    assert sim.attempt("j-1.a.0.2").spent is False


def test_a_restarted_framework_finishes_a_dag_and_keeps_ended_jobs_as_history() -> None:
    sim = Sim()
    running_job(sim, job(stage("map", array=2, outputs=["o.txt"]), stage("reduce", depends_on=["map"])))
    sim.offers(2.0, offer("o1"))
    sim.finish(3.0, "j-1.map.0.1")
    sim = sim.restarted(4.0)
    sim.subscribe(4.0)
    assert sim.core.producers == {("j-1", "map", 0): ("j-1.map.0.1", "a1")}
    sim.finish(5.0, "j-1.map.1.1")
    sim.tick(5.0)
    effects = sim.offers(6.0, offer("o2"))
    assert launched_ids(effects) == ["j-1.reduce.0.1"]
    # The reduce fetches both outputs, the one finished before the restart too, from their sandboxes.
    assert [(u.value, u.output_file, u.extract, u.cache) for u in only(effects, Launch)[0].tasks[0].command.uris] == [
        (f"{MASTER}/tasks/j-1.map.{i}.1/files/download?framework_id=fw&agent_id=a1&path=o.txt", f"map/{i}/o.txt",
         False, True) for i in (0, 1)]
    sim.finish(7.0, "j-1.reduce.0.1")
    sim = sim.restarted(8.0)
    entry = sim.core.jobs["j-1"]
    assert entry.run is None and entry.record.state == "SUCCEEDED"
    assert sim.core.job_summary(entry)["tasks"] == {"total": 3, "succeeded": 3, "failed": 0, "running": 0,
                                                    "pending": 0}
    assert kinds(sim.subscribe(8.0)) == ["Reconcile", "Demand"]


@pytest.mark.parametrize("state", [TaskState.FINISHED, TaskState.FAILED])
def test_an_end_arriving_after_a_restart_is_recorded_once(state: TaskState) -> None:
    sim = Sim()
    running_job(sim, job(stage("s", retries=RETRY)))
    sim.offers(2.0, offer("o1"))
    sim.update(3.0, "j-1.s.0.1", TaskState.RUNNING)
    sim = sim.restarted(4.0)
    sim.subscribe(4.0)
    first = sim.update(5.0, "j-1.s.0.1", state, exit_code=0 if state == TaskState.FINISHED else 1)
    assert kinds(first)[:2] == ["Persist", "Publish:attempt_updated"]
    sim2 = sim.restarted(6.0)
    sim2.subscribe(6.0)
    assert sim2.update(7.0, "j-1.s.0.1", state, exit_code=0 if state == TaskState.FINISHED else 1) == []
    assert sim2.attempt("j-1.s.0.1").finished_at == 5.0
    if state == TaskState.FINISHED:
        assert sim2.successes == {("j-1", "s", 0): 1}
        assert sim2.state("j-1") == "SUCCEEDED"
    else:
        assert sim2.core.jobs["j-1"].run.stages["s"].spent[0] == 1


def test_a_job_cancelled_before_a_restart_has_its_kills_reconciled_asked_again_and_recorded() -> None:
    sim = Sim()
    running_job(sim, job(stage("s", array=2)))
    sim.offers(2.0, offer("o1"))
    sim.command("cancel", "j-1", 3.0)
    sim = sim.restarted(4.0)
    assert sim.core.queues.running_count() == 2  # they hold their resources until they end
    assert sim.subscribe(4.0)[0] == Reconcile((("j-1.s.0.1", "a1"), ("j-1.s.1.1", "a1")))
    assert only(sim.tick(4.0), Kill) == [Kill("j-1.s.0.1", "a1"), Kill("j-1.s.1.1", "a1")]
    sim.update(5.0, "j-1.s.0.1", TaskState.KILLED)
    sim.update(5.0, "j-1.s.1.1", TaskState.KILLED)
    assert [(a.state, a.outcome) for a in map(sim.attempt, ("j-1.s.0.1", "j-1.s.1.1"))] == [("KILLED", "cancelled")] * 2
    assert sim.core.queues.running_count() == 0
    assert sim.state("j-1") == "CANCELLED"
    assert sim.command("delete", "j-1", 6.0)[0] == {"deleted": "j-1"}


def test_a_restart_after_two_lost_launches_at_the_same_time_queues_each_index_once() -> None:
    """A crash between the store commit and the launch, twice at the same time: each index then
    has two backoffs due at the same moment in its replay, and is queued once."""
    sim = Sim()
    running_job(sim, job(stage("s", array=2)))
    for n in range(2):
        sim.batch(sim.core.offers([offer(f"o{n}")], 2.0), execute=False)
        sim = sim.restarted(2.0)
        sim.subscribe(2.0)
        for i in range(2):
            sim.update(2.0, f"j-1.s.{i}.{n + 1}", TaskState.UNKNOWN, reason=TaskReason.RECONCILIATION)
    sim = sim.restarted(2.0)
    sim.subscribe(2.0)
    assert sim.core.queues.pending_count("j-1") == 2
    assert launched_ids(sim.offers(3.0, offer("o3"))) == ["j-1.s.0.3", "j-1.s.1.3"]


def test_with_the_cluster_token_each_artifact_uri_carries_its_producers_task_files_token_not_the_token() -> None:
    from tepui.frameworks.batch.core import BatchConfig, BatchCore
    from tepui.sdk.relay_tokens import task_files_token

    sim = Sim()
    sim.core = BatchCore(config=BatchConfig(cluster_token="cluster-secret"))
    sim.subscribe(0.0)
    running_job(sim, job(stage("map", outputs=["o.txt"]), stage("reduce", depends_on=["map"])))
    sim.offers(2.0, offer("o1"))
    sim.finish(3.0, "j-1.map.0.1")
    sim.tick(3.0)
    uri = only(sim.offers(4.0, offer("o2")), Launch)[0].tasks[0].command.uris[0].value
    token = task_files_token("cluster-secret", "fw", "j-1.map.0.1")
    assert uri.startswith(f"http://artifact:{token}@") and "cluster-secret" not in uri
