"""The cron core on a fake clock: every event's exact effects (the harness is
:mod:`.cron_sim`: it checks the write-ahead rule on every batch, commits each Persist as JSON,
plays the batch framework's idempotent submit, and restarts the core from the store).

Times are plain floats (Unix seconds); the schedule ``r`` (``R/1970-01-01T00:00:00Z/PT60S``)
fires every 60 s at whole minutes, so fire keys are ``r-60``, ``r-120``...
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from tepui.frameworks.cron.core import CronConfig
from tepui.frameworks.cron.effects import CancelJob, Persist, Publish, SubmitJob
from tepui.frameworks.cron.fires import jitter_of
from tepui.frameworks.cron.records import FireRecord, ScheduleRecord
from tepui.sdk.framework_effects import CommandError

from tests.frameworks.cron.cron_sim import JOB, Sim, kinds, only, schedule, submitted_ids


def intended(key: str, at: float, seq: int, decided_at: float | None = None, **fields: Any) -> FireRecord:
    fields.setdefault("job", JOB)
    return FireRecord(schedule="r", key=key, scheduled_at=at, decided_at=at if decided_at is None else decided_at,
                      submit_after=at, seq=seq, **fields)


def created(now: float = 10.0, **kw: Any) -> Sim:
    sim = Sim()
    sim.command("create", schedule(**kw), now)
    return sim


def run(sim: Sim, now: float) -> list[str]:
    """A tick, its submits delivered and answered; the keys submitted."""
    keys = submitted_ids(sim.tick(now))
    sim.deliver(now)
    return keys


# --- create, fire, submit, end -------------------------------------------------------------


def test_create_stores_the_schedule_and_answers_its_next_fire() -> None:
    sim = Sim()
    answer, effects = sim.command("create", schedule(), 10.0)
    summary = {"id": "r", "suspended": False, "last_fire_at": None, "next_fire_at": 60.0, "running": [],
               "last_run": None}
    assert answer == {"schedule": summary, "created": True}
    record = ScheduleRecord(id="r", spec=schedule().data or {}, created_at=10.0, checked_through=10.0)
    assert effects == [Persist((("schedules", "r", record),)), Publish("schedule_created", {"schedule": summary})]
    with pytest.raises(CommandError) as refused:
        sim.command("create", schedule(), 11.0)
    assert (refused.value.status, refused.value.reason, refused.value.field) == (409, "SCHEDULE_EXISTS", "id")


def test_a_fire_is_written_ahead_intended_in_the_persist_before_its_submit() -> None:
    sim = created()
    assert sim.tick(59.0) == []  # nothing due, nothing written
    effects = sim.tick(60.0)
    schedule_record = ScheduleRecord(id="r", spec=schedule().data or {}, created_at=10.0, checked_through=60.0,
                                     last_fire_at=60.0)
    assert effects == [
        Persist((("fires", "r/r-60", intended("r-60", 60.0, 1)), ("schedules", "r", schedule_record))),
        SubmitJob("r-60", JOB, "r"),
    ]
    assert sim.tick(61.0) == []  # asked once: the shell's answer is awaited
    effects = sim.deliver(61.5)
    submitted = intended("r-60", 60.0, 1, state="SUBMITTED", submitted_at=61.5)
    assert effects[0] == Persist((("fires", "r/r-60", submitted),))
    assert kinds(effects) == ["Persist", "Publish:fire_submitted"]
    assert sim.core.following() == ["r-60"]
    effects = sim.ended("r-60", "SUCCEEDED", 90.0)
    done = intended("r-60", 60.0, 1, state="SUCCEEDED", submitted_at=61.5, ended_at=90.0, job_state="SUCCEEDED",
                    job=None)
    assert effects[0] == Persist((("fires", "r/r-60", done),))
    assert kinds(effects) == ["Persist", "Publish:fire_ended"]
    assert sim.core.following() == [] and sim.created == {"r-60": 1}
    assert sim.ended("r-60", "SUCCEEDED", 91.0) == []  # a repeated end
    assert sim.command("create", schedule("q"), 100.0)[0]["schedule"]["next_fire_at"] == 120.0


def test_a_job_end_maps_to_the_fire_state_and_an_unknown_job_is_ignored() -> None:
    sim = created()
    for now in (60.0, 120.0, 180.0):
        run(sim, now)
    sim.ended("r-60", "DEADLINE_EXCEEDED", 200.0)
    sim.ended("r-120", "CANCELLED", 200.0)
    sim.ended("r-180", "FAILED", 200.0)  # keeps the newest failure (failed_history 1)
    assert [(f.key, f.state, f.job_state) for f in sim.fires()] == [("r-180", "FAILED", "FAILED")]
    assert sim.ended("other-5", "SUCCEEDED", 201.0) == []


# --- submit failures -------------------------------------------------------------------------


def test_an_unanswered_submit_is_retried_with_doubling_backoff_under_the_same_id() -> None:
    sim = created()
    sim.tick(60.0)
    assert sim.deliver(60.0, fail=("connection refused", True)) == []
    assert sim.tick(60.5) == []
    assert submitted_ids(sim.tick(61.0)) == ["r-60"]  # 1 s
    sim.deliver(61.0, fail=("503", True))
    assert sim.tick(62.5) == []
    assert submitted_ids(sim.tick(63.0)) == ["r-60"]  # 2 s
    sim.deliver(63.0)
    assert sim.fire("r", "r-60").state == "SUBMITTED" and sim.created == {"r-60": 1}


def test_a_refused_submit_is_recorded_failed_with_the_batch_frameworks_reason() -> None:
    sim = created()
    sim.jobs["r-60"] = {"name": "someone else's"}  # the id is taken by another spec
    sim.tick(60.0)
    effects = sim.deliver(60.0)
    fire = sim.fire("r", "r-60")
    assert (fire.state, fire.reason) == ("FAILED", "submit refused: 409 JOB_EXISTS: job r-60 exists with another spec")
    assert kinds(effects) == ["Persist", "Publish:fire_ended"]
    assert sim.tick(61.0) == []


# --- starting deadline and catch-up ----------------------------------------------------------


def test_a_fire_late_by_the_starting_deadline_is_missed_with_the_reason_never_submitted() -> None:
    sim = created(starting_deadline=30.0, catch_up="all")
    effects = sim.tick(95.0)  # the framework did not tick from 10 s to 95 s: r-60 is 35 s late
    missed = FireRecord(schedule="r", key="r-60", scheduled_at=60.0, state="MISSED", decided_at=95.0, ended_at=95.0,
                        through=65.0, count=1, seq=1,
                        reason="late by starting_deadline (30s) or more: the framework was not running or not "
                               "ticking from 1970-01-01T00:00:10Z to 1970-01-01T00:01:35Z")
    assert effects[0].puts[0] == ("fires", "r/r-60", missed)
    assert kinds(effects) == ["Persist", "Publish:fire_missed"]
    assert only(effects, Publish)[0].data["since"] == "1970-01-01T00:01:00Z"
    assert run(sim, 120.0) == ["r-120"]


def test_catch_up_none_misses_every_late_fire_and_runs_the_on_time_one() -> None:
    sim = created(catch_up="none")
    assert run(sim, 305.0) == ["r-300"]  # r-300 is 5 s late: on time (on_time 10 s)
    (missed, ran) = sim.fires()
    assert (missed.key, missed.state, missed.count, missed.through) == ("r-60", "MISSED", 4, 295.0)
    assert missed.reason.startswith("catch_up none: the framework was not running")
    assert run(sim, 330.0) == []  # r-240 late → missed


def test_catch_up_latest_runs_only_the_newest_late_fire() -> None:
    sim = created(catch_up="latest")
    assert run(sim, 330.0) == ["r-300"]
    missed = sim.fires()[0]
    assert (missed.key, missed.count, missed.reason.split(";")[0]) == ("r-60", 4, "catch_up latest: superseded by r-300")
    sim = created(catch_up="latest")
    assert run(sim, 302.0) == ["r-300"]  # on time: it supersedes the late ones
    assert sim.fires()[0].count == 4


def test_catch_up_all_runs_every_late_fire_up_to_the_limit_the_newest_ones() -> None:
    sim = created(catch_up="all", catch_up_limit=3)
    assert run(sim, 330.0) == ["r-180", "r-240", "r-300"]
    missed = sim.fires()[0]
    assert (missed.key, missed.count, missed.state) == ("r-60", 2, "MISSED")
    assert missed.reason.startswith("catch_up all: more than catch_up_limit (3) fires were due")
    sim = created(catch_up="all", catch_up_limit=3)
    assert run(sim, 190.0) == ["r-60", "r-120", "r-180"]  # within the limit: all, oldest first


class Counting:
    """The schedule's timeline, counting the calls the core makes of it."""

    def __init__(self, timeline: Any) -> None:
        self.timeline, self.calls = timeline, 0

    def next_after(self, t: float) -> Any:
        self.calls += 1
        return self.timeline.next_after(t)

    def fires_between(self, after: float, until: float, limit: int) -> Any:
        self.calls += 1
        return self.timeline.fires_between(after, until, limit)

    def count_between(self, after: float, until: float) -> int:
        self.calls += 1
        return int(self.timeline.count_between(after, until))


@pytest.mark.parametrize("rule", [{}, {"cron": "* * * * *"}])
def test_ten_thousand_missed_fires_cost_bounded_records_and_work(rule: dict[str, Any]) -> None:
    for catch_up in ("none", "latest", "all"):
        sim = created(catch_up=catch_up, catch_up_limit=100, **rule)
        entry = sim.core.schedules["r"]
        counting = Counting(entry.definition.timeline)
        entry.definition = dataclasses.replace(entry.definition, timeline=counting)
        started = time.perf_counter()
        keys = run(sim, 60.0 * 10_000 + 30.0)
        assert time.perf_counter() - started < 3.0
        assert len(keys) == {"none": 0, "latest": 1, "all": 100}[catch_up]
        missed = [f for f in sim.fires() if f.state == "MISSED"]
        assert [f.count for f in missed] == [{"none": 10_000, "latest": 9_999, "all": 9_900}[catch_up]]
        assert counting.calls < 100


# --- concurrency ------------------------------------------------------------------------------


def test_allow_runs_beside_a_running_job() -> None:
    sim = created()
    assert run(sim, 60.0) == ["r-60"]
    assert run(sim, 120.0) == ["r-120"]
    assert sim.core.following() == ["r-60", "r-120"]


def test_forbid_misses_a_fire_while_a_run_is_in_flight_and_says_which() -> None:
    sim = created(concurrency="Forbid")
    run(sim, 60.0)
    effects = sim.tick(120.0)
    missed = FireRecord(schedule="r", key="r-120", scheduled_at=120.0, state="MISSED", decided_at=120.0,
                        ended_at=120.0, through=120.0, reason="forbid: r-60 still running", seq=2)
    assert effects[0] == Persist((("fires", "r/r-120", missed), ("schedules", "r", sim.core.schedules["r"].record)))
    assert kinds(effects) == ["Persist", "Publish:fire_missed"]
    sim.ended("r-60", "FAILED", 150.0)
    assert run(sim, 180.0) == ["r-180"]


def test_replace_cancels_the_running_job_then_submits() -> None:
    sim = created(concurrency="Replace")
    run(sim, 60.0)
    effects = sim.tick(120.0)
    assert kinds(effects) == ["Persist", "CancelJob", "SubmitJob"]
    assert effects[1:] == [CancelJob("r-60"), SubmitJob("r-120", JOB, "r")]
    assert sim.fire("r", "r-60").reason == "replaced by r-120"
    sim.deliver(120.0)
    sim.ended("r-60", "CANCELLED", 121.0)
    assert (sim.fire("r", "r-60").state, sim.core.following()) == ("CANCELLED", ["r-120"])


def test_replace_of_an_unconfirmed_submit_cancels_it_once_it_is_confirmed() -> None:
    sim = created(concurrency="Replace")
    sim.tick(60.0)
    sim.deliver(60.0, fail=("timeout", True))  # r-60 may or may not exist
    effects = sim.tick(120.0)
    assert only(effects, CancelJob) == [] and submitted_ids(effects) == ["r-60", "r-120"]
    effects = sim.deliver(120.0)
    assert only(effects, CancelJob) == [CancelJob("r-60")]


def test_forbid_in_a_catch_up_runs_the_first_and_misses_the_rest_as_one_record() -> None:
    sim = created(concurrency="Forbid", catch_up="all")
    assert run(sim, 250.0) == ["r-60"]
    assert [(f.key, f.state, f.count, f.through, f.reason) for f in sim.fires()] == [
        ("r-60", "SUBMITTED", 1, None, ""), ("r-120", "MISSED", 3, 240.0, "forbid: r-60 still running")]


def test_replace_in_a_catch_up_runs_only_the_newest() -> None:
    sim = created(concurrency="Replace", catch_up="all")
    effects = sim.tick(250.0)
    assert submitted_ids(effects) == ["r-240"] and only(effects, CancelJob) == []
    assert [(f.key, f.state, f.count, f.reason) for f in sim.fires()] == [
        ("r-60", "MISSED", 3, "replace: superseded by r-240, due in the same catch-up"), ("r-240", "INTENDED", 1, "")]


# --- suspend, resume, clock -------------------------------------------------------------------


def test_suspend_then_resume_does_not_burst_the_fires_of_the_suspension_are_one_missed_record() -> None:
    sim = created(catch_up="all")
    run(sim, 60.0)
    answer, effects = sim.command("suspend", "r", 70.0)
    assert answer["schedule"]["suspended"] is True and answer["schedule"]["running"] == ["r-60"]
    assert sim.command("suspend", "r", 71.0)[1] == []  # idempotent
    assert sim.tick(600.0) == []
    answer, effects = sim.command("resume", "r", 1000.0)
    assert kinds(effects) == ["Persist", "Publish:fire_missed", "Publish:schedule_updated"]
    missed = [f for f in sim.fires() if f.state == "MISSED"][0]
    assert (missed.key, missed.count, missed.through, missed.reason) == (
        "r-120", 15, 1000.0, "suspended from 1970-01-01T00:01:10Z to 1970-01-01T00:16:40Z")
    assert run(sim, 1001.0) == []
    assert run(sim, 1020.0) == ["r-1020"]


def test_a_schedule_created_suspended_fires_only_after_resume() -> None:
    sim = created(suspend=True)
    assert sim.tick(60.0) == []
    sim.command("resume", "r", 100.0)
    assert run(sim, 120.0) == ["r-120"]


def test_the_clock_stepped_back_never_fires_at_or_before_the_high_water_mark_again() -> None:
    sim = created()
    assert run(sim, 60.0) == ["r-60"]
    assert run(sim, 70.0) == []
    assert run(sim, 30.0) == [] and run(sim, 60.0) == [] and run(sim, 65.0) == []  # stepped back 40 s
    assert run(sim, 120.0) == ["r-120"]
    assert sim.created == {"r-60": 1, "r-120": 1}


def test_the_clock_stepped_forward_is_downtime_catch_up_decides() -> None:
    sim = created(catch_up="latest")
    assert run(sim, 60.0) == ["r-60"]
    assert run(sim, 3630.0) == ["r-3600"]  # an hour's step: the newest runs, the rest missed
    assert [(f.key, f.state, f.count) for f in sim.fires()][1:] == [("r-120", "MISSED", 58), ("r-3600", "SUBMITTED", 1)]


def test_apply_of_a_new_timeline_does_not_reach_back_before_the_apply() -> None:
    sim = created(every=3600.0)
    answer, _ = sim.command("apply", schedule(every=60.0), 1830.0)
    assert answer["schedule"]["next_fire_at"] == 1860.0 and answer["created"] is False
    assert run(sim, 1835.0) == [] and run(sim, 1860.0) == ["r-1860"]
    assert sim.command("apply", schedule("new"), 1900.0)[0]["created"] is True
    sim.command("apply", schedule(every=60.0, suspend=True), 1900.0)
    assert sim.core.schedules["r"].record.suspended is True


def test_jitter_delays_the_submit_not_the_decision_nor_the_key() -> None:
    sim = created(jitter=7.0)
    effects = sim.tick(60.0)
    assert kinds(effects) == ["Persist"]
    delay = jitter_of("r-60", 7.0)
    assert 0 < delay < 7 and sim.fire("r", "r-60").submit_after == 60.0 + delay
    assert submitted_ids(sim.tick(60.0 + delay - 0.1)) == [] and submitted_ids(sim.tick(60.0 + delay)) == ["r-60"]
    sim = sim.restarted(61.0)  # the same delay after a restart
    assert submitted_ids(sim.tick(61.0)) == [] and submitted_ids(sim.tick(60.0 + delay)) == ["r-60"]


# --- history ----------------------------------------------------------------------------------


def test_history_keeps_three_successful_one_failed_and_ten_missed_records() -> None:
    sim = created(concurrency="Forbid")
    for k in range(1, 6):
        run(sim, 60.0 * k)
        sim.ended(f"r-{60 * k}", "SUCCEEDED" if k != 2 else "FAILED", 60.0 * k + 1)
    assert [(f.key, f.state) for f in sim.fires()] == [
        ("r-120", "FAILED"), ("r-180", "SUCCEEDED"), ("r-240", "SUCCEEDED"), ("r-300", "SUCCEEDED")]
    run(sim, 360.0)
    for k in range(7, 20):
        run(sim, 60.0 * k)  # Forbid: r-360 runs on, each fire missed
    assert len([f for f in sim.fires() if f.state == "MISSED"]) == CronConfig().missed_kept
    assert sim.fires()[-1].key == "r-1140"
    sim.ended("r-360", "SUCCEEDED", 2000.0)
    assert "r-180" not in [f.key for f in sim.fires()]


# --- trigger and rm ---------------------------------------------------------------------------


def test_trigger_runs_now_under_a_manual_key_outside_the_schedule() -> None:
    sim = created(concurrency="Forbid", suspend=True)
    answer, effects = sim.command("trigger", "r", 42.7)
    assert answer["created"] is True and answer["fire"]["key"] == "r_manual_42"
    assert kinds(effects) == ["Persist", "Publish:fire_triggered", "SubmitJob"]
    assert effects[2] == SubmitJob("r_manual_42", JOB, "r")
    assert sim.command("trigger", "r", 42.9) == ({"fire": answer["fire"], "created": False}, [])
    sim.deliver(43.0)
    sim.command("resume", "r", 50.0)
    sim.tick(60.0)  # Forbid: the manual run counts
    assert sim.fire("r", "r-60").reason == "forbid: r_manual_42 still running"
    assert sim.core.schedules["r"].record.last_fire_at == 60.0


def test_rm_forgets_the_schedule_leaves_submitted_jobs_running_refuses_while_unconfirmed() -> None:
    sim = created()
    sim.tick(60.0)
    with pytest.raises(CommandError) as refused:
        sim.command("rm", "r", 61.0)
    assert (refused.value.status, refused.value.reason) == (409, "FIRE_UNCONFIRMED")
    sim.deliver(61.0)
    answer, effects = sim.command("rm", "r", 62.0)
    assert answer == {"deleted": "r", "running": ["r-60"]}
    assert effects[0] == Persist((), (("schedules", "r"),), (("fires", "r/"),))
    assert sim.store == {"schedules": {}, "fires": {}}
    assert sim.tick(120.0) == [] and sim.ended("r-60", "SUCCEEDED", 130.0) == []
    with pytest.raises(CommandError) as unknown:
        sim.command("suspend", "r", 131.0)
    assert (unknown.value.status, unknown.value.field) == (404, "id")


def test_a_fixed_time_fire_in_the_fall_back_hour_is_submitted_once_through_the_core() -> None:
    """01:30 New York happens twice on 2024-11-03; the schedule's rule (:mod:`.fires`) fires
    at the first, and the core, ticking every minute through the night, submits it once."""
    start = 1730592000.0  # 2024-11-03T00:00:00Z, 20:00 EDT the day before
    sim = Sim()
    sim.command("create", schedule(cron="30 1 * * *", time_zone="America/New_York"), start)
    keys = [k for minute in range(1, 24 * 60) for k in run(sim, start + 60.0 * minute)]
    assert keys == ["r-1730611800"]  # 05:30Z = 01:30 EDT, the first 01:30
    assert sim.created == {"r-1730611800": 1}
