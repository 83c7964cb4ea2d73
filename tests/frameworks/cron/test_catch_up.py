""":func:`~tepui.frameworks.cron.catch_up.newest` (the newest N fires found by a doubling then
bisecting search on time) against the plain walk of every fire, on irregular real schedules —
weekday office hours every 4 hours (the schedule whose constant-gap assumption broke Kubernetes'
missed-run count, kubernetes#118724), a DST zone, an ISO interval with a repetition limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tepui.frameworks.cron.catch_up import newest
from tepui.frameworks.cron.fires import Schedule
from tepui.frameworks.cron.spec import load_schedule, schedule_of

JOB = {"name": "j", "stages": [{"name": "s", "command": "x"}]}
SCHEDULES = [
    schedule_of(load_schedule({"id": "a", "cron": "30 6-16/4 * * 1-5", "time_zone": "Europe/Berlin", "job": JOB})),
    schedule_of(load_schedule({"id": "b", "cron": "*/7 1-3 * * *", "time_zone": "America/New_York", "job": JOB})),
    schedule_of(load_schedule({"id": "c", "interval": "R40/2024-03-08T02:30:00-05:00/PT5H", "time_zone":
                               "America/New_York", "job": JOB})),
]
START = 1709251200.0  # 2024-03-01T00:00:00Z


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SCHEDULES), st.integers(0, 20 * 86400), st.integers(0, 20 * 86400), st.integers(0, 12))
def test_newest_finds_exactly_the_last_n_fires(schedule: Schedule, a: int, b: int, n: int) -> None:
    after, until = START + min(a, b), START + max(a, b)
    every = schedule.fires_between(after, until, 10**6)
    cut, fires = newest(schedule, after, until, n)
    assert [f.key for f in fires] == [f.key for f in every[max(len(every) - n, 0):]]
    assert after <= cut <= until
    assert schedule.count_between(after, cut) == len(every) - len(fires)
