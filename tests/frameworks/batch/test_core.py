"""The batch core on a fake clock: every event's exact effects (the harness is
:mod:`.batch_sim`: it checks the write-ahead rule on every batch, commits each Persist as JSON,
and restarts the core from that store as the shell does).

Times are plain floats; job ids are ``j-1``, ``j-2``... (``new_id``), so task ids are
``j-1.s.0.1`` and every effect can be compared whole.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tepui.frameworks.batch.effects import Decline, Demand, Kill, Launch, Persist, Publish, Reconcile
from tepui.frameworks.batch.queue_values import QueueConfig, QueuesConfig
from tepui.frameworks.batch.records import AttemptRecord, JobRecord, StageRecord
from tepui.sdk import CommandInfo, Resources, TaskInfo, TaskReason, TaskState

from tests.frameworks.batch.batch_sim import (
    Sim, index_of, job, kinds, launched_ids, killed_ids, offer, only, published, put_keys, stage,
)

ONE = Resources.parse("cpus:1;mem:64")


def attempt(task_id: str, **fields: Any) -> AttemptRecord:
    """The attempt record of ``task_id`` (job.stage.index.attempt) with ``fields``."""
    job_id, stage_name, index = index_of(task_id)
    return AttemptRecord(job=job_id, stage=stage_name, index=index, attempt=int(task_id.rsplit(".", 1)[1]),
                         task_id=task_id, **fields)


def running_job(sim: Sim, spec: Any, now: float = 1.0) -> str:
    """Submits ``spec`` (subscribing first) and returns its id."""
    if sim.core.framework_id is None:
        sim.subscribe(0.0)
    answer, _ = sim.submit(spec, now)
    return str(answer["job"]["id"])


# --- subscribe, submit, launch ---------------------------------------------------------------


def test_subscribed_without_jobs_remembers_the_framework_id_reconciles_and_declares_no_demand() -> None:
    sim = Sim()
    assert sim.subscribe(0.0) == [Persist((("framework", "id", "fw"),)), Reconcile(()),
                                  Demand((), revive=False)]
    assert sim.subscribe(1.0) == [Reconcile(()), Demand((), revive=False)]


def test_submit_persists_the_spec_and_record_first_then_publishes_and_revives_with_the_demand() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    spec = job(stage("map", array=3), stage("reduce", depends_on=["map"]), labels={"team": "data"})
    answer, effects = sim.submit(spec, 1.0, user="ana")
    record = JobRecord(id="j-1", name="j", user="ana", submitted_at=1.0, clock_at=1.0)
    summary = {
        **msgspec.to_builtins(record),
        "stages": [
            {"job": "j-1", "stage": "map", "state": "ACTIVE", "pending": 3, "queued": 0, "running": 0, "succeeded": 0,
             "failed": 0, "skipped": 0, "reason": "", "array": 3, "depends_on": []},
            {"job": "j-1", "stage": "reduce", "state": "WAITING", "pending": 1, "queued": 0, "running": 0,
             "succeeded": 0, "failed": 0, "skipped": 0, "reason": "", "array": 1,
             "depends_on": [{"stage": "map", "condition": "all_succeeded"}]},
        ],
        "tasks": {"total": 4, "succeeded": 0, "failed": 0, "running": 0, "pending": 4},
    }
    stored_spec = msgspec.structs.replace(spec, user="ana").to_data()
    assert answer == {"job": summary, "created": True}
    assert effects == [
        Persist((("specs", "j-1", stored_spec), ("jobs", "j-1", record))),
        Publish("job_submitted", {"job": summary}),
        Demand(((ONE, 3),), revive=True),  # only what may run: reduce waits for map
    ]
    assert sim.store["jobs"]["j-1"] == msgspec.json.encode(record)


def test_the_spec_user_wins_over_the_caller_and_anonymous_is_the_last_resort() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    assert sim.submit(job(user="bob"), 1.0, user="ana")[0]["job"]["user"] == "bob"
    assert sim.submit(job(), 1.0, user=None)[0]["job"]["user"] == "anonymous"


def test_offers_persist_the_attempts_first_then_launch_exact_task_infos_and_decline_the_rest() -> None:
    sim = Sim()
    running_job(sim, job(stage("s", array=2, resources={"cpus": 1, "mem": 64, "ports": 2}, env={"K": "v"}),
                         labels={"team": "data"}))
    effects = sim.offers(2.0, offer("o1", resources="cpus:2;mem:1024;ports:[31000-31002,31005-31010]"),
                         offer("o2", agent="a2", host="h2"))

    def info(index: int, ports: tuple[int, int]) -> TaskInfo:
        tid = f"j-1.s.{index}.1"
        env = {"K": "v", "TEPUI_JOB": "j", "TEPUI_STAGE": "s", "TEPUI_TASK_INDEX": str(index), "TEPUI_TASK_COUNT": "2",
               "TEPUI_JOB_ID": "j-1", "TEPUI_TASK_ID": tid, "TEPUI_ATTEMPT": "1", "HOST": "h1",
               "PORT0": str(ports[0]), "PORT1": str(ports[1]), "PORT": str(ports[0]), "PORTS": f"{ports[0]},{ports[1]}"}
        return TaskInfo(
            name=f"j.s.{index}", task_id=tid, agent_id="a1",
            resources=Resources.parse(f"cpus:1;mem:64;ports:[{ports[0]}-{ports[0]},{ports[1]}-{ports[1]}]").to_wire(),
            command=CommandInfo(value="x", shell=True, environment=env),
            labels={"team": "data", "tepui.batch/job": "j-1", "tepui.batch/stage": "s", "tepui.batch/index": str(index)})

    running = JobRecord(id="j-1", name="j", user="ana", state="RUNNING", submitted_at=1.0, clock_at=1.0, started_at=2.0)
    assert effects == [
        Persist((
            ("attempts", "j-1.s.0.1", attempt("j-1.s.0.1", agent_id="a1", queued_at=1.0, launched_at=2.0, launched_seq=1)),
            ("jobs", "j-1", running),
            ("attempts", "j-1.s.1.1", attempt("j-1.s.1.1", agent_id="a1", queued_at=1.0, launched_at=2.0, launched_seq=2)),
        )),
        Launch("o1", (info(0, (31000, 31001)), info(1, (31002, 31005)))),  # the lowest free ports, across ranges
        Decline(("o2",), 5.0),
    ]
    assert sim.core.queues.running_count() == 2


def test_running_then_finished_records_the_success_once_ends_the_job_and_publishes() -> None:
    sim = Sim()
    running_job(sim, job())
    sim.offers(2.0, offer("o1"))
    running = attempt("j-1.s.0.1", agent_id="a1", state="RUNNING", queued_at=1.0, launched_at=2.0, running_at=3.0,
                      task_state="TASK_RUNNING", launched_seq=1, running_seq=2)
    assert sim.update(3.0, "j-1.s.0.1", TaskState.RUNNING) == [Persist((("attempts", "j-1.s.0.1", running),))]
    assert sim.update(3.5, "j-1.s.0.1", TaskState.RUNNING) == []  # nothing changed, nothing written
    effects = sim.update(4.0, "j-1.s.0.1", TaskState.FINISHED, exit_code=0)
    done = msgspec.structs.replace(running, state="FINISHED", finished_at=4.0, exit_code=0, task_state="TASK_FINISHED",
                                   outcome="succeeded", finished_seq=3)
    record = JobRecord(id="j-1", name="j", user="ana", state="SUCCEEDED", submitted_at=1.0, clock_at=1.0,
                       started_at=2.0, finished_at=4.0)
    stage_record = StageRecord(job="j-1", stage="s", state="SUCCEEDED", pending=0, queued=0, running=0, succeeded=1,
                               failed=0, skipped=0)
    assert effects == [
        Persist((("jobs", "j-1", record), ("attempts", "j-1.s.0.1", done), ("stages", "j-1/s", stage_record))),
        Publish("attempt_updated", {"attempt": msgspec.to_builtins(done)}),
        Publish("job_ended", {"job": sim.core.job_summary(sim.core.jobs["j-1"])}),
    ]
    assert published(effects, "job_ended")[0]["job"]["tasks"] == {"total": 1, "succeeded": 1, "failed": 0,
                                                                  "running": 0, "pending": 0}
    assert sim.core.queues.running_count() == 0
    # The next tick says the counts changed once, and the demand is nothing.
    assert kinds(sim.tick(5.0)) == ["Publish:job_updated", "Demand"]
    assert sim.tick(6.0) == []


# --- DAGs ---------------------------------------------------------------------------------------


def test_a_downstream_stage_is_queued_only_after_every_upstream_index_succeeded() -> None:
    sim = Sim()
    running_job(sim, job(stage("map", array=2), stage("reduce", depends_on=["map"])))
    assert launched_ids(sim.offers(2.0, offer("o1"))) == ["j-1.map.0.1", "j-1.map.1.1"]
    sim.finish(3.0, "j-1.map.0.1")
    assert sim.offers(4.0, offer("o2")) == [Decline(("o2",), 5.0)]  # map[1] still runs
    effects = sim.update(5.0, "j-1.map.1.1", TaskState.FINISHED, exit_code=0)
    assert sim.core.queues.pending_count("j-1") == 1  # queued in the same batch
    assert kinds(effects) == ["Persist", "Publish:attempt_updated"]
    assert sim.tick(5.5)[-1] == Demand(((ONE, 1),), revive=True)
    assert launched_ids(sim.offers(6.0, offer("o3"))) == ["j-1.reduce.0.1"]


def test_n_to_n_runs_each_downstream_index_as_soon_as_its_upstream_index_succeeded() -> None:
    sim = Sim()
    running_job(sim, job(stage("a", array=3), stage("b", array=3, depends_on=[{"stage": "a", "condition": "n_to_n"}])))
    sim.offers(2.0, offer("o1"))
    sim.finish(3.0, "j-1.a.1.1")
    assert launched_ids(sim.offers(4.0, offer("o2"))) == ["j-1.b.1.1"]
    sim.update(5.0, "j-1.a.0.1", TaskState.FAILED, exit_code=1)  # no retries: index 0 fails, b[0] never runs
    sim.finish(6.0, "j-1.a.2.1")
    assert launched_ids(sim.offers(7.0, offer("o3"))) == ["j-1.b.2.1"]
    sim.finish(8.0, "j-1.b.1.1", "j-1.b.2.1")
    record = sim.core.jobs["j-1"].record
    assert (record.state, record.reason) == ("FAILED", "stages did not succeed: a, b")
    assert sim.core.job_summary(sim.core.jobs["j-1"])["tasks"] == {"total": 6, "succeeded": 4, "failed": 2,
                                                                   "running": 0, "pending": 0}


def test_any_finished_runs_after_a_failed_upstream_and_all_succeeded_does_not() -> None:
    sim = Sim()
    running_job(sim, job(stage("a"), stage("b", depends_on=[{"stage": "a", "condition": "any_finished"}]),
                         stage("c", depends_on=["a"])))
    sim.offers(2.0, offer("o1"))
    effects = sim.update(3.0, "j-1.a.0.1", TaskState.FAILED, exit_code=2)
    assert ("stages", "j-1/c") in put_keys(effects)  # c: UPSTREAM_FAILED, written when it ended
    assert sim.core.jobs["j-1"].stage_records["c"].state == "UPSTREAM_FAILED"
    assert launched_ids(sim.offers(4.0, offer("o2"))) == ["j-1.b.0.1"]
    sim.finish(5.0, "j-1.b.0.1")
    assert sim.state("j-1") == "FAILED"


# --- failures and retries ----------------------------------------------------------------------


RETRY = {"attempts": 3, "backoff": {"initial": "PT10S"}}


def test_a_failure_is_retried_after_its_backoff_and_only_then_queued_by_a_tick() -> None:
    sim = Sim()
    running_job(sim, job(stage("s", retries=RETRY)))
    sim.offers(2.0, offer("o1"))
    sim.update(3.0, "j-1.s.0.1", TaskState.RUNNING)
    effects = sim.update(4.0, "j-1.s.0.1", TaskState.FAILED, exit_code=1)
    failed = attempt("j-1.s.0.1", agent_id="a1", state="FAILED", queued_at=1.0, launched_at=2.0, running_at=3.0,
                     finished_at=4.0, exit_code=1, task_state="TASK_FAILED", outcome="retry", spent=True,
                     retry_at=14.0, launched_seq=1, running_seq=2, finished_seq=3)
    assert effects == [Persist((("attempts", "j-1.s.0.1", failed),)),
                       Publish("attempt_updated", {"attempt": msgspec.to_builtins(failed)})]
    assert sim.offers(5.0, offer("o2")) == [Decline(("o2",), 5.0)]
    assert kinds(sim.tick(13.9)) == ["Publish:job_updated", "Demand"]  # Demand(()): nothing waits
    assert sim.core.queues.pending_count("j-1") == 0
    effects = sim.tick(14.0)
    assert effects[-1] == Demand(((ONE, 1),), revive=True)
    effects = sim.offers(15.0, offer("o3"))
    assert launched_ids(effects) == ["j-1.s.0.2"]
    assert only(effects, Launch)[0].tasks[0].command.environment["TEPUI_ATTEMPT"] == "2"
    # The second failure waits twice as long (factor 2).
    sim.update(16.0, "j-1.s.0.2", TaskState.FAILED, exit_code=1)
    assert sim.attempt("j-1.s.0.2").retry_at == 36.0
    sim.tick(36.0)
    sim.offers(37.0, offer("o4"))
    effects = sim.update(38.0, "j-1.s.0.3", TaskState.FAILED, exit_code=1)  # the third of 3 attempts
    assert sim.attempt("j-1.s.0.3").outcome == "index_failed"
    assert sim.state("j-1") == "FAILED"
    assert kinds(effects) == ["Persist", "Publish:attempt_updated", "Publish:job_ended"]


def test_an_agent_loss_is_retried_at_once_without_spending_an_attempt() -> None:
    sim = Sim()
    running_job(sim, job())  # attempts: 1, no retry for a real failure
    sim.offers(2.0, offer("o1"))
    sim.update(3.0, "j-1.s.0.1", TaskState.RUNNING)
    effects = sim.update(4.0, "j-1.s.0.1", TaskState.LOST, reason=TaskReason.AGENT_REMOVED)
    lost = sim.attempt("j-1.s.0.1")
    assert (lost.state, lost.failure, lost.outcome, lost.spent, lost.retry_at) == ("LOST", "agent_lost", "lost", False, 4.0)
    assert kinds(effects) == ["Persist", "Publish:attempt_updated"]
    assert sim.core.queues.pending_count("j-1") == 1  # queued again in the same batch
    assert sim.core.queues.running_count() == 0
    assert launched_ids(sim.offers(5.0, offer("o2", agent="a2", host="h2"))) == ["j-1.s.0.2"]
    sim.update(6.0, "j-1.s.0.2", TaskState.GONE, agent="a2", reason=TaskReason.AGENT_REMOVED)  # gone: free too
    assert launched_ids(sim.offers(7.0, offer("o3", agent="a3", host="h3"))) == ["j-1.s.0.3"]
    sim.finish(8.0, "j-1.s.0.3", agent="a3")
    assert sim.state("j-1") == "SUCCEEDED"


def test_a_timeout_kills_the_task_and_its_end_is_retried_then_fails_the_job() -> None:
    sim = Sim()
    running_job(sim, job(stage("s", timeout="PT60S", retries={"attempts": 2, "backoff": {"initial": "PT0S"}})))
    sim.offers(2.0, offer("o1"))
    sim.update(10.0, "j-1.s.0.1", TaskState.RUNNING)
    assert kinds(sim.tick(69.0)) == ["Publish:job_updated", "Demand"]
    effects = sim.tick(70.0)
    killing = attempt("j-1.s.0.1", agent_id="a1", state="RUNNING", queued_at=1.0, launched_at=2.0, running_at=10.0,
                      task_state="TASK_RUNNING", killed_by="timeout", launched_seq=1, running_seq=2)
    assert effects == [Persist((("attempts", "j-1.s.0.1", killing),)), Kill("j-1.s.0.1", "a1"),
                       Publish("job_updated", {"job": sim.core.job_summary(sim.core.jobs["j-1"])})]
    assert sim.tick(80.0) == []  # the kill is asked again after 30 s, not before
    assert only(sim.tick(100.0), Kill) == [Kill("j-1.s.0.1", "a1")]
    sim.update(101.0, "j-1.s.0.1", TaskState.KILLED)
    ended = sim.attempt("j-1.s.0.1")
    assert (ended.state, ended.failure, ended.outcome, ended.spent) == ("KILLED", "timeout", "retry", True)
    sim.tick(101.0)
    assert launched_ids(sim.offers(102.0, offer("o2"))) == ["j-1.s.0.2"]
    # Never RUNNING: the timeout runs from the launch.
    assert killed_ids(sim.tick(162.0)) == ["j-1.s.0.2"]
    sim.update(163.0, "j-1.s.0.2", TaskState.KILLED)
    assert sim.state("j-1") == "FAILED"
    assert sim.attempt("j-1.s.0.2").outcome == "index_failed"


def test_the_deadline_kills_everything_and_ends_the_job_deadline_exceeded() -> None:
    sim = Sim()
    running_job(sim, job(stage("s", array=3, parallelism=2), deadline="PT100S"))
    sim.offers(2.0, offer("o1"))
    sim.update(3.0, "j-1.s.0.1", TaskState.RUNNING)
    assert sim.core.queues.pending_count("j-1") == 0  # parallelism 2: index 2 waits in the run
    effects = sim.tick(101.0)
    record = sim.record("j-1")
    assert (record.state, record.finished_at, record.reason) == ("DEADLINE_EXCEEDED", 101.0, "deadline PT100S passed")
    assert [e for e in effects if isinstance(e, Kill)] == [Kill("j-1.s.0.1", "a1"), Kill("j-1.s.1.1", "a1")]
    assert kinds(effects) == ["Persist", "Kill", "Kill", "Publish:job_ended", "Publish:job_updated", "Demand"]
    assert {sim.attempt(t).killed_by for t in ("j-1.s.0.1", "j-1.s.1.1")} == {"deadline"}
    assert sim.core.queues.running_count() == 2  # until the kills are confirmed
    sim.update(102.0, "j-1.s.0.1", TaskState.KILLED)
    sim.update(102.0, "j-1.s.1.1", TaskState.KILLED)
    assert sim.core.queues.running_count() == 0
    assert sim.attempt("j-1.s.0.1").outcome == "deadline"
    assert sim.state("j-1") == "DEADLINE_EXCEEDED"
    assert sim.offers(103.0, offer("o2")) == [Decline(("o2",), 5.0)]


# --- gangs ---------------------------------------------------------------------------------------


GANG = stage("g", array=3, gang=True, resources={"cpus": 2, "mem": 64},
             retries={"attempts": 2, "backoff": {"initial": "PT5S"}})


def test_a_gang_is_placed_only_when_all_its_members_fit_in_the_offers() -> None:
    sim = Sim()
    running_job(sim, job(GANG))
    assert sim.core.queues.pending_count("j-1") == 3
    assert sim.offers(2.0, offer("o1")) == [Decline(("o1",), 5.0)]  # 4 cpus: two members, not three
    effects = sim.offers(3.0, offer("o2"), offer("o3", agent="a2", host="h2"))
    assert launched_ids(effects) == ["j-1.g.0.1", "j-1.g.1.1", "j-1.g.2.1"]
    assert kinds(effects) == ["Persist", "Launch", "Launch"]
    assert sorted(k for _, k in put_keys(effects)) == ["j-1", "j-1.g.0.1", "j-1.g.1.1", "j-1.g.2.1"]


def test_one_gang_member_failing_kills_the_others_and_the_whole_gang_is_retried() -> None:
    sim = Sim()
    running_job(sim, job(GANG))
    sim.offers(2.0, offer("o1", resources="cpus:8;mem:1024"))
    for i in range(3):
        sim.update(3.0, f"j-1.g.{i}.1", TaskState.RUNNING)
    sim.update(4.0, "j-1.g.0.1", TaskState.FINISHED, exit_code=0)  # a member done: not a success yet
    assert sim.successes == {}
    effects = sim.update(5.0, "j-1.g.1.1", TaskState.FAILED, exit_code=1)
    assert killed_ids(effects) == ["j-1.g.2.1"]
    assert sim.attempt("j-1.g.2.1").killed_by == "gang"
    assert sim.core.queues.pending_count("j-1") == 0  # the gang waits for its last member
    sim.update(6.0, "j-1.g.2.1", TaskState.KILLED)
    assert sim.tick(6.0)[-1] == Demand((), revive=False)
    assert sim.core.queues.pending_count("j-1") == 0  # backoff 5 s
    sim.tick(10.9)
    assert sim.core.queues.pending_count("j-1") == 0
    sim.tick(11.0)
    assert sim.core.queues.pending_count("j-1") == 3
    effects = sim.offers(12.0, offer("o2", resources="cpus:8;mem:1024"))
    assert launched_ids(effects) == ["j-1.g.0.2", "j-1.g.1.2", "j-1.g.2.2"]  # the finished member reruns too
    sim.finish(13.0, "j-1.g.0.2", "j-1.g.1.2", "j-1.g.2.2")
    assert sim.state("j-1") == "SUCCEEDED"
    assert sim.core.jobs["j-1"].stage_records["g"].succeeded == 3


def test_a_gang_member_lost_with_its_agent_kills_the_others_and_the_gang_is_retried_at_once_free() -> None:
    sim = Sim()
    _, effects = sim.submit(job(GANG), 1.0)
    assert effects[-1] == Demand(((Resources.parse("cpus:2;mem:64"), 3),), revive=True)
    sim.offers(2.0, offer("o1", resources="cpus:8;mem:1024"))
    effects = sim.update(3.0, "j-1.g.1.1", TaskState.LOST, reason=TaskReason.AGENT_REMOVED)
    assert only(effects, Kill) == [Kill("j-1.g.0.1", "a1"), Kill("j-1.g.2.1", "a1")]
    sim.update(4.0, "j-1.g.0.1", TaskState.KILLED)
    sim.update(4.0, "j-1.g.2.1", TaskState.KILLED)
    assert [(a.outcome, a.spent) for a in map(sim.attempt, ("j-1.g.0.1", "j-1.g.1.1", "j-1.g.2.1"))] == [
        ("gang", False), ("gang_failed", False), ("gang", False)]
    assert sim.core.queues.pending_count("j-1") == 3  # no backoff for a loss
    assert launched_ids(sim.offers(5.0, offer("o2", resources="cpus:8;mem:1024"))) == [
        "j-1.g.0.2", "j-1.g.1.2", "j-1.g.2.2"]


# --- status updates the core did not expect ------------------------------------------------------


def test_an_update_for_an_unknown_task_kills_it_when_it_runs_and_is_ignored_when_it_ended() -> None:
    sim = Sim()
    running_job(sim, job())
    assert sim.update(2.0, "j-9.s.0.1", TaskState.RUNNING, agent="a7") == [Kill("j-9.s.0.1", "a7")]
    assert sim.update(2.0, "j-9.s.0.1", TaskState.FINISHED, exit_code=0) == []
    assert sim.update(2.0, "not-ours", TaskState.RUNNING, agent="a7") == [Kill("not-ours", "a7")]
    # A task of a known job with no live attempt (an older try, say) is killed too, on its agent.
    assert sim.update(2.0, "j-1.s.0.7", TaskState.RUNNING, agent="a7") == [Kill("j-1.s.0.7", "a7")]


def test_a_duplicate_terminal_update_records_no_second_success_and_frees_no_second_slot() -> None:
    sim = Sim(QueuesConfig((QueueConfig("default", max_running=2),)))
    running_job(sim, job(stage("s", array=3)))
    assert launched_ids(sim.offers(2.0, offer("o1"))) == ["j-1.s.0.1", "j-1.s.1.1"]  # the queue's limit
    sim.finish(3.0, "j-1.s.0.1")
    assert sim.core.queues.running_count() == 1
    assert sim.update(4.0, "j-1.s.0.1", TaskState.FINISHED, exit_code=0) == []  # the duplicate: nothing
    assert sim.update(4.0, "j-1.s.0.1", TaskState.FAILED, exit_code=1) == []
    assert sim.core.queues.running_count() == 1  # index 1 still holds its slot
    assert launched_ids(sim.offers(5.0, offer("o2"))) == ["j-1.s.2.1"]
    assert sim.core.queues.running_count() == 2
    assert sim.successes == {("j-1", "s", 0): 1}
    assert sim.core.jobs["j-1"].run.stage_record("s").succeeded == 1


def test_a_late_end_of_an_older_attempt_leaves_the_running_retry_its_queue_slot() -> None:
    sim = Sim(QueuesConfig((QueueConfig("default", max_running=1),)))
    running_job(sim, job(stage("s", array=2, retries={"attempts": 2, "backoff": {"initial": "PT0S"}})))
    sim.offers(2.0, offer("o1"))
    sim.update(3.0, "j-1.s.0.1", TaskState.LOST, reason=TaskReason.AGENT_REMOVED)
    assert launched_ids(sim.offers(4.0, offer("o2"))) == ["j-1.s.0.2"]  # the retry comes first
    assert sim.core.queues.running_count() == 1
    # The queue counts by (job, stage, index): were this update taken for the live attempt's end,
    # index 1 would be launched next to the retry, over the queue's limit.
    assert sim.update(5.0, "j-1.s.0.1", TaskState.LOST, reason=TaskReason.AGENT_REMOVED) == []
    assert sim.core.queues.running_count() == 1
    assert sim.offers(6.0, offer("o3")) == [Decline(("o3",), 5.0)]


# --- the fair queue -------------------------------------------------------------------------------


def test_two_users_share_the_offers_by_drf_through_the_core() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    sim.submit(job(stage("s", array=6)), 1.0, user="ana")
    sim.submit(job(stage("s", array=6)), 2.0, user="bob")  # submitted later: FIFO would give ana everything
    effects = sim.offers(3.0, offer("o1", resources="cpus:4;mem:4096"))
    users = sorted(index_of(t)[0] for t in launched_ids(effects))
    assert users == ["j-1", "j-1", "j-2", "j-2"]
    assert sim.core.queues.share("ana") == sim.core.queues.share("bob") > 0


def test_weights_and_queue_priorities_through_the_core() -> None:
    sim = Sim(QueuesConfig((QueueConfig("default"), QueueConfig("prod", priority=10)), weights=(("ana", 2.0),)))
    sim.subscribe(0.0)
    sim.submit(job(stage("s", array=8)), 1.0, user="ana")
    sim.submit(job(stage("s", array=8)), 2.0, user="bob")
    assert launched_ids(sim.offers(3.0, offer("o1", resources="cpus:6;mem:4096"))) == [  # ana weighs twice bob
        "j-1.s.0.1", "j-2.s.0.1", "j-1.s.1.1", "j-2.s.1.1", "j-1.s.2.1", "j-1.s.3.1"]
    sim.submit(job(stage("s", array=2), queue="prod"), 4.0, user="bob")  # the prod queue is served first
    assert launched_ids(sim.offers(5.0, offer("o2", resources="cpus:2;mem:4096"))) == ["j-3.s.0.1", "j-3.s.1.1"]


# --- expiry ---------------------------------------------------------------------------------------


def test_an_ended_job_is_forgotten_ttl_after_its_end_records_deleted() -> None:
    sim = Sim()
    running_job(sim, job(ttl_after_finished="PT100S"))
    sim.offers(2.0, offer("o1"))
    sim.finish(3.0, "j-1.s.0.1")
    assert set(sim.store) >= {"specs", "jobs", "attempts", "stages"}
    assert sim.tick(102.9) == [Publish("job_updated", {"job": sim.core.job_summary(sim.core.jobs["j-1"])}),
                               Demand((), revive=False)]
    assert sim.tick(103.0) == [
        Persist((), (("jobs", "j-1"), ("specs", "j-1"), ("stages", "j-1/s")), (("attempts", "j-1."),)),
        Publish("job_deleted", {"id": "j-1"}),
    ]
    assert "j-1" not in sim.core.jobs
    assert {ns: keys for ns, keys in sim.store.items() if keys and ns != "framework"} == {}
