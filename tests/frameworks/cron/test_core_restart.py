"""The cron core crashed at each point of a fire's life and restarted from what it stored
(:func:`~tepui.frameworks.cron.loading.load_schedules`, as the shell does): before the write,
between the write and the submit, after the submit but before its answer was recorded. In
every case the fire is submitted — one job in the batch framework, under its one id — and
never skipped (harness: :mod:`.cron_sim`, whose batch framework is idempotent on the id)."""

from __future__ import annotations

from typing import Any

from tepui.frameworks.cron.definition import ScheduleDef
from tepui.frameworks.cron.effects import CancelJob, SubmitJob
from tepui.frameworks.cron.loading import load_schedules

from tests.frameworks.cron.cron_sim import JOB, build, kinds, only, schedule, submitted_ids
from tests.frameworks.cron.test_core import created, run


def test_load_schedules_reads_back_what_was_stored_and_reports_an_unreadable_spec() -> None:
    sim = created()
    run(sim, 60.0)
    sim.tick(120.0)
    [(definition, record, fires)] = load_schedules(sim.store, build)
    assert (definition.id, record.checked_through, record.last_fire_at) == ("r", 120.0, 120.0)
    assert [(f.key, f.state) for f in fires] == [("r-60", "SUBMITTED"), ("r-120", "INTENDED")]
    told: list[tuple[str, str]] = []

    def refuse(data: dict[str, Any]) -> ScheduleDef:
        raise ValueError("cron: unknown field")

    assert load_schedules(sim.store, refuse, lambda i, why: told.append((i, why))) == []
    assert told == [("r", "cron: unknown field")]
    assert load_schedules({}, build) == []


def test_a_crash_before_the_write_decides_the_fire_again_after_the_restart() -> None:
    sim = created()
    assert submitted_ids(sim.tick(60.0, commit=False)) == ["r-60"]  # dies before the commit
    assert "fires" not in sim.store
    sim = sim.restarted(65.0)
    assert submitted_ids(sim.tick(65.0)) == ["r-60"]  # 5 s late: on time
    sim.deliver(65.0)
    assert sim.created == {"r-60": 1} and sim.fire("r", "r-60").state == "SUBMITTED"


def test_a_crash_between_the_write_and_the_submit_resubmits_the_intended_fire() -> None:
    sim = created(starting_deadline=30.0)
    sim.tick(60.0, execute=False)  # stored INTENDED, the submit never sent
    assert sim.jobs == {}
    sim = sim.restarted(200.0)  # past the deadline: the decision was taken, the fire runs
    effects = sim.tick(200.0)
    assert kinds(effects) == ["Persist", "Publish:fire_missed", "SubmitJob", "SubmitJob"]
    assert effects[2:] == [SubmitJob("r-60", JOB, "r"), SubmitJob("r-180", JOB, "r")]
    sim.deliver(200.0)
    assert sim.created == {"r-60": 1, "r-180": 1}
    assert [(f.key, f.state, f.count) for f in sim.fires()] == [  # r-120: past the deadline at the restart
        ("r-60", "SUBMITTED", 1), ("r-120", "MISSED", 1), ("r-180", "SUBMITTED", 1)]


def test_a_crash_after_the_submit_before_its_answer_resubmits_and_the_batch_framework_answers_the_same_job() -> None:
    sim = created()
    sim.tick(60.0)
    sim.deliver(60.0, answer=False)  # the job exists, the answer is lost with the process
    assert sim.created == {"r-60": 1} and sim.fire("r", "r-60").state == "INTENDED"
    sim = sim.restarted(61.0)
    assert submitted_ids(sim.tick(61.0)) == ["r-60"]
    sim.deliver(61.0)
    assert sim.created == {"r-60": 1} and sim.submits == [("r-60", JOB), ("r-60", JOB)]
    assert sim.fire("r", "r-60").state == "SUBMITTED"
    assert run(sim, 120.0) == ["r-120"]


def test_a_resubmission_after_apply_sends_the_spec_written_ahead_not_the_new_template() -> None:
    sim = created()
    sim.tick(60.0)
    sim.deliver(60.0, answer=False)
    sim = sim.restarted(61.0)
    _, effects = sim.command("apply", schedule(job={**JOB, "name": "v2"}), 61.0)
    assert only(effects, SubmitJob) == [SubmitJob("r-60", JOB, "r")]
    sim.deliver(61.0)
    assert sim.created == {"r-60": 1} and sim.fire("r", "r-60").state == "SUBMITTED"
    sim.tick(120.0)
    assert sim.fire("r", "r-120").job == {**JOB, "name": "v2"}


def test_a_restart_resumes_following_the_submitted_jobs_and_records_their_ends_once() -> None:
    sim = created()
    run(sim, 60.0)
    sim = sim.restarted(70.0)
    assert sim.core.following() == ["r-60"] and sim.tick(70.0) == []
    sim.ended("r-60", "SUCCEEDED", 71.0)
    sim = sim.restarted(72.0)
    assert sim.ended("r-60", "SUCCEEDED", 72.0) == []
    assert sim.fire("r", "r-60").state == "SUCCEEDED"


def test_a_job_end_for_an_intended_fire_confirms_its_submit() -> None:
    sim = created()
    sim.tick(60.0)
    sim.deliver(60.0, answer=False)
    sim = sim.restarted(61.0)
    sim.ended("r-60", "SUCCEEDED", 61.0)  # the batch stream told us before the repeated submit
    assert sim.tick(62.0) == []
    fire = sim.fire("r", "r-60")
    assert (fire.state, fire.submitted_at) == ("SUCCEEDED", 61.0)


def test_a_restart_while_suspended_keeps_it_suspended_and_resume_still_does_not_burst() -> None:
    sim = created()
    sim.command("suspend", "r", 30.0)
    sim = sim.restarted(500.0)
    assert sim.tick(500.0) == []
    sim.command("resume", "r", 500.0)
    assert [(f.key, f.count) for f in sim.fires()] == [("r-60", 8)]
    assert run(sim, 510.0) == [] and run(sim, 540.0) == ["r-540"]


def test_a_replace_cancel_lost_in_a_crash_is_asked_again_after_the_restart() -> None:
    sim = created(concurrency="Replace")
    run(sim, 60.0)
    sim.tick(120.0, execute=False)  # r-60 marked replaced and r-120 stored; the cancel never sent
    sim = sim.restarted(121.0)
    effects = sim.tick(121.0)
    assert effects == [CancelJob("r-60"), SubmitJob("r-120", JOB, "r")]
    sim.ended("r-60", "CANCELLED", 122.0)
    assert sim.tick(123.0) == [] and sim.fire("r", "r-60").state == "CANCELLED"
