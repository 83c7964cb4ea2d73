"""The batch API's commands on the core (submit, cancel, suspend, resume, retry, delete): their
exact effects and their refusals (the :class:`CommandError` status and reason), through the
:mod:`.batch_sim` harness."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tepui.frameworks.batch.effects import Decline, Demand, Kill, Persist, Publish
from tepui.frameworks.batch.queue_values import QueueConfig, QueuesConfig
from tepui.frameworks.batch.records import JobRecord, StageRecord
from tepui.sdk import Resources, TaskState
from tepui.sdk.framework_effects import CommandError

from tests.frameworks.batch.batch_sim import Sim, job, kinds, launched_ids, offer, only, put_keys, stage

ONE = Resources.parse("cpus:1;mem:64")


def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str | None]:
    with pytest.raises(CommandError) as caught:
        call(*args, **kwargs)
    return caught.value.status, caught.value.reason, caught.value.field


def started(sim: Sim, spec: Any = None, offers: str = "cpus:2;mem:1024") -> str:
    """Subscribes, submits ``spec`` (3 tasks by default) at 1.0 and places what fits one offer at 2.0."""
    sim.subscribe(0.0)
    answer, _ = sim.submit(spec or job(stage("s", array=3)), 1.0)
    sim.offers(2.0, offer("o1", resources=offers))
    return str(answer["job"]["id"])


# --- submit ---------------------------------------------------------------------------------------


def test_submit_is_idempotent_on_the_job_id() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    first, effects = sim.submit(job(), 1.0, job_id="nightly-2026-12-07")
    assert first["created"] is True and first["job"]["id"] == "nightly-2026-12-07"
    assert put_keys(effects) == [("specs", "nightly-2026-12-07"), ("jobs", "nightly-2026-12-07")]
    again, effects = sim.submit(job(), 5.0, user="someone-else", job_id="nightly-2026-12-07")
    assert (again, effects) == ({"job": sim.core.job_summary(sim.core.jobs["nightly-2026-12-07"]), "created": False}, [])
    assert again["job"]["submitted_at"] == 1.0 and again["job"]["user"] == "ana"
    assert refused(sim.submit, job(stage("s", array=2)), 6.0, job_id="nightly-2026-12-07") == (409, "JOB_EXISTS", None)
    assert list(sim.core.jobs) == ["nightly-2026-12-07"]
    sim = sim.restarted(7.0)  # the spec read back from the store is the same spec
    assert sim.submit(job(), 8.0, job_id="nightly-2026-12-07")[0]["created"] is False


@pytest.mark.parametrize("job_id", ["Upper", "a.b", "-a", "a" * 129, ""])
def test_a_job_id_that_cannot_be_a_task_id_prefix_is_refused(job_id: str) -> None:
    sim = Sim()
    assert refused(sim.submit, job(), 1.0, job_id=job_id) == (400, "INVALID_JOB_ID", "id")


def test_an_unknown_queue_is_refused_naming_the_known_ones() -> None:
    sim = Sim(QueuesConfig((QueueConfig("default"), QueueConfig("prod", priority=10))))
    with pytest.raises(CommandError) as caught:
        sim.submit(job(queue="nightly"), 1.0)
    assert (caught.value.status, caught.value.reason, caught.value.field) == (400, "UNKNOWN_QUEUE", "queue")
    assert "default, prod" in caught.value.message
    assert sim.core.jobs == {} and sim.store == {}
    assert sim.submit(job(queue="prod"), 1.0)[0]["job"]["queue"] == "prod"


@pytest.mark.parametrize("constraint", [["hostname", "UNIQUE"], ["rack", "MAX_PER", "2"], ["rack", "GROUP_BY"],
                                        ["rack", "CLUSTER"]])
def test_constraints_that_depend_on_other_tasks_are_refused(constraint: list[str]) -> None:
    sim = Sim()
    spec = job(stage("a"), stage("b", constraints=[["zone", "LIKE", "eu-.*"], constraint]))
    assert refused(sim.submit, spec, 1.0) == (400, "UNSUPPORTED_CONSTRAINT", "stages[1].constraints[1]")


def test_is_like_unlike_and_cluster_with_a_value_place_by_attribute() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    sim.submit(job(stage("s", constraints=[["zone", "CLUSTER", "eu"], ["rack", "UNLIKE", "r1"]])), 1.0)
    assert sim.offers(2.0, offer("o1", attributes={"zone": "us", "rack": "r2"}),
                      offer("o2", agent="a2", attributes={"zone": "eu", "rack": "r1"})) == [Decline(("o1", "o2"), 5.0)]
    assert launched_ids(sim.offers(3.0, offer("o3", agent="a3", attributes={"zone": "eu", "rack": "r2"}))) == [
        "j-1.s.0.1"]


def test_a_job_submitted_suspended_queues_nothing_until_resumed() -> None:
    sim = Sim()
    sim.subscribe(0.0)
    answer, effects = sim.submit(job(suspend=True), 1.0)
    assert answer["job"]["state"] == "SUSPENDED"
    assert kinds(effects) == ["Persist", "Publish:job_submitted"]
    assert sim.offers(2.0, offer("o1")) == [Decline(("o1",), 5.0)]
    _, effects = sim.command("resume", "j-1", 3.0)
    assert effects[0] == Persist((("jobs", "j-1", JobRecord(id="j-1", name="j", user="ana", submitted_at=1.0,
                                                            clock_at=3.0)),))
    assert effects[1] == Demand(((ONE, 1),), revive=True)
    assert launched_ids(sim.offers(4.0, offer("o2"))) == ["j-1.s.0.1"]


# --- suspend and resume ------------------------------------------------------------------------


def test_suspend_kills_the_live_tasks_drops_the_queued_ones_and_resume_runs_them_again_free() -> None:
    sim = Sim()
    started(sim)  # 2 of 3 fit: index 2 stays queued
    assert sim.core.queues.pending_count("j-1") == 1
    answer, effects = sim.command("suspend", "j-1", 3.0)
    assert answer["job"]["state"] == "SUSPENDED" and answer["job"]["suspended"] is True
    assert kinds(effects) == ["Persist", "Kill", "Kill", "Demand", "Publish:job_updated"]
    assert only(effects, Kill) == [Kill("j-1.s.0.1", "a1"), Kill("j-1.s.1.1", "a1")]
    assert effects[3] == Demand((), revive=False)
    assert put_keys(effects) == [("jobs", "j-1"), ("attempts", "j-1.s.0.1"), ("attempts", "j-1.s.1.1")]
    assert (sim.core.queues.pending_count("j-1"), sim.core.queues.running_count()) == (0, 2)
    answer, effects = sim.command("suspend", "j-1", 3.5)  # again: nothing more to do
    assert answer["job"]["state"] == "SUSPENDED" and kinds(effects) == ["Publish:job_updated"]
    sim.update(4.0, "j-1.s.0.1", TaskState.KILLED)
    ended = sim.attempt("j-1.s.0.1")
    assert (ended.outcome, ended.spent, ended.killed_by) == ("suspended", False, "suspend")
    answer, effects = sim.command("resume", "j-1", 5.0)
    assert answer["job"]["state"] == "RUNNING"
    assert kinds(effects) == ["Persist", "Demand", "Publish:job_updated"]
    assert effects[1] == Demand(((ONE, 2),), revive=True)  # index 1's kill is not confirmed yet
    assert launched_ids(sim.offers(6.0, offer("o2", resources="cpus:2;mem:1024"))) == ["j-1.s.0.2", "j-1.s.2.1"]
    assert refused(sim.command, "resume", "j-1", 7.0) == (409, "NOT_SUSPENDED", None)


def test_suspend_stops_the_deadline_and_resume_restarts_it() -> None:
    sim = Sim()
    started(sim, job(deadline="PT100S"))
    sim.command("suspend", "j-1", 50.0)
    sim.update(51.0, "j-1.s.0.1", TaskState.KILLED)
    sim.tick(200.0)
    assert sim.state("j-1") == "SUSPENDED"
    sim.command("resume", "j-1", 300.0)
    sim.tick(399.0)
    assert sim.state("j-1") == "RUNNING"
    sim.tick(400.0)
    assert sim.state("j-1") == "DEADLINE_EXCEEDED"


# --- cancel --------------------------------------------------------------------------------------


def test_cancel_kills_everything_ends_the_job_and_writes_its_stage_records() -> None:
    sim = Sim()
    started(sim)
    answer, effects = sim.command("cancel", "j-1", 3.0)
    assert answer["job"]["state"] == "CANCELLED"
    record = sim.record("j-1")
    assert (record.state, record.reason, record.finished_at) == ("CANCELLED", "cancelled by the user", 3.0)
    assert kinds(effects) == ["Persist", "Kill", "Kill", "Publish:job_ended", "Demand", "Publish:job_updated"]
    assert sorted(put_keys(effects)) == [("attempts", "j-1.s.0.1"), ("attempts", "j-1.s.1.1"), ("jobs", "j-1"),
                                         ("stages", "j-1/s")]
    assert msgspec.json.decode(sim.store["stages"]["j-1/s"], type=StageRecord) == StageRecord(
        job="j-1", stage="s", state="ACTIVE", pending=1, queued=0, running=2, succeeded=0, failed=0, skipped=0)
    assert sim.core.queues.pending_count("j-1") == 0
    assert refused(sim.command, "cancel", "j-1", 4.0) == (409, "JOB_ENDED", None)
    assert refused(sim.command, "suspend", "j-1", 4.0) == (409, "JOB_ENDED", None)
    # The kills' confirmations end the attempts as cancelled; nothing runs again.
    sim.update(5.0, "j-1.s.0.1", TaskState.KILLED)
    sim.update(5.0, "j-1.s.1.1", TaskState.FINISHED, exit_code=0)  # it finished before the kill
    assert [sim.attempt(t).outcome for t in ("j-1.s.0.1", "j-1.s.1.1")] == ["cancelled", "succeeded"]
    assert sim.core.queues.running_count() == 0
    assert sim.offers(6.0, offer("o2")) == [Decline(("o2",), 5.0)]


def test_commands_on_an_unknown_job_answer_404() -> None:
    sim = Sim()
    for name in ("cancel", "suspend", "resume", "retry", "delete"):
        assert refused(sim.command, name, "nope", 1.0) == (404, "UNKNOWN_JOB", None)


# --- retry ---------------------------------------------------------------------------------------


def test_retry_reruns_only_the_failed_and_skipped_indices_with_a_fresh_budget() -> None:
    sim = Sim()
    started(sim, job(stage("a", array=3), stage("b", depends_on=["a"])), offers="cpus:4;mem:1024")
    assert refused(sim.command, "retry", "j-1", 2.5) == (409, "NOTHING_TO_RETRY", None)
    sim.finish(3.0, "j-1.a.0.1", "j-1.a.2.1")
    sim.update(3.0, "j-1.a.1.1", TaskState.FAILED, exit_code=1)
    assert sim.state("j-1") == "FAILED"
    answer, effects = sim.command("retry", "j-1", 10.0)
    assert answer["job"]["state"] == "RUNNING"
    record = sim.record("j-1")
    assert (record.retried_at, record.clock_at, record.finished_at, record.reason) == ([10.0], 10.0, None, "")
    assert effects[-2:] == [Demand(((ONE, 1),), revive=True), Publish("job_updated", {"job": answer["job"]})]
    assert launched_ids(sim.offers(11.0, offer("o2"))) == ["j-1.a.1.2"]
    sim.finish(12.0, "j-1.a.1.2")
    sim.tick(12.0)
    assert launched_ids(sim.offers(13.0, offer("o3"))) == ["j-1.b.0.1"]
    sim.finish(14.0, "j-1.b.0.1")
    assert sim.state("j-1") == "SUCCEEDED"
    assert sim.successes == {("j-1", "a", 0): 1, ("j-1", "a", 1): 1, ("j-1", "a", 2): 1, ("j-1", "b", 0): 1}
    assert refused(sim.command, "retry", "j-1", 15.0) == (409, "NOTHING_TO_RETRY", None)


def test_retry_waits_for_kills_to_be_confirmed_and_survives_a_restart() -> None:
    sim = Sim()
    started(sim, job(stage("s", array=2), deadline="PT10S"))
    sim.tick(11.0)
    assert sim.state("j-1") == "DEADLINE_EXCEEDED"
    assert refused(sim.command, "retry", "j-1", 12.0) == (409, "NOTHING_TO_RETRY", None)  # still being killed
    sim.update(13.0, "j-1.s.0.1", TaskState.KILLED)
    sim.update(13.0, "j-1.s.1.1", TaskState.KILLED)
    sim = sim.restarted(14.0)  # a DEADLINE_EXCEEDED job's run is rebuilt: it may be retried
    sim.subscribe(14.0)
    _, effects = sim.command("retry", "j-1", 15.0)
    assert effects[-2] == Demand(((ONE, 2),), revive=True)
    assert launched_ids(sim.offers(16.0, offer("o2"))) == ["j-1.s.0.2", "j-1.s.1.2"]
    sim = sim.restarted(17.0)  # the retry is replayed at its place
    sim.subscribe(17.0)
    sim.finish(18.0, "j-1.s.0.2", "j-1.s.1.2")
    assert sim.state("j-1") == "SUCCEEDED"


def test_a_succeeded_job_loaded_after_a_restart_is_history_only() -> None:
    sim = Sim()
    started(sim, job())
    sim.finish(3.0, "j-1.s.0.1")
    sim = sim.restarted(4.0)
    assert sim.core.jobs["j-1"].run is None
    assert refused(sim.command, "retry", "j-1", 5.0) == (409, "JOB_ENDED", None)
    assert refused(sim.command, "cancel", "j-1", 5.0) == (409, "JOB_ENDED", None)
    assert sim.command("delete", "j-1", 5.0)[0] == {"deleted": "j-1"}


# --- delete --------------------------------------------------------------------------------------


def test_delete_forgets_an_ended_job_now_and_refuses_a_job_that_runs() -> None:
    sim = Sim()
    started(sim, job(stage("s", array=2)))
    assert refused(sim.command, "delete", "j-1", 3.0) == (409, "JOB_NOT_ENDED", None)
    sim.command("cancel", "j-1", 3.0)
    assert refused(sim.command, "delete", "j-1", 3.5) == (409, "JOB_NOT_ENDED", None)  # kills not confirmed
    sim.update(4.0, "j-1.s.0.1", TaskState.KILLED)
    sim.update(4.0, "j-1.s.1.1", TaskState.KILLED)
    answer, effects = sim.command("delete", "j-1", 5.0)
    assert answer == {"deleted": "j-1"}
    assert effects == [Persist((), (("jobs", "j-1"), ("specs", "j-1"), ("stages", "j-1/s")), (("attempts", "j-1."),)),
                       Publish("job_deleted", {"id": "j-1"})]
    assert {ns: keys for ns, keys in sim.store.items() if keys and ns != "framework"} == {}
    assert sim.update(6.0, "j-1.s.0.1", TaskState.KILLED) == []  # a late duplicate: nothing to do
    # The id is free again.
    assert sim.submit(job(), 7.0, job_id="j-1")[0]["created"] is True
    assert launched_ids(sim.offers(8.0, offer("o2"))) == ["j-1.s.0.1"]
