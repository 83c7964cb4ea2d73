"""The examples in examples/cron/ parse, and their next fires across the 2026 and 2027
Europe/Berlin transitions agree with an independent computation: a minute-by-minute walk over
UTC instants with zoneinfo alone (no croniter, no code of the framework), which applies the
rules of docs/cron.md "Time zones and DST" as a person would read a wall clock:

- a fixed-time schedule (``30 2 * * *``) fires on each local date at the first minute the wall
  clock reads 02:30 or later — once, even when 02:30 happens twice, and at 03:00 when it never
  happens;
- an elapsed-time schedule (``* * * * *``) fires at every minute of real time.

The walk is the issue's "Done when: `tepui cron next` agrees with an independent computation for
the examples"; tests/cli/test_cron.py runs `tepui cron next` on the same files against it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tepui.frameworks.cron.spec import ScheduleSpec, parse_schedule, schedule_of

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "cron"
BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.timezone.utc


def example(name: str) -> ScheduleSpec:
    return parse_schedule((EXAMPLES / f"{name}.yaml").read_text())


def berlin_transitions(year: int) -> list[float]:
    """The instants Europe/Berlin changes its offset in ``year``, found by a walk."""
    t = dt.datetime(year, 1, 1, tzinfo=UTC).timestamp()
    end = dt.datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()
    found, before = [], dt.datetime.fromtimestamp(t, BERLIN).utcoffset()
    while t < end:
        t += 900
        offset = dt.datetime.fromtimestamp(t, BERLIN).utcoffset()
        if offset != before:
            found.append(t)
            before = offset
    return found


def walk_fires(cron: str, zone: ZoneInfo, after: float, n: int) -> list[tuple[float, str]]:
    """The first ``n`` fires strictly after ``after`` as (instant, local ISO with offset), by
    reading the zone's wall clock at every UTC minute. Knows the examples' two shapes only: every
    minute, and a fixed ``M H * * *``."""
    fields = cron.split()
    every_minute = fields == ["*"] * 5
    if not every_minute:
        assert fields[2:] == ["*", "*", "*"] and fields[0].isdigit() and fields[1].isdigit(), cron
        target = dt.time(int(fields[1]), int(fields[0]))
    t = (int(after) // 60 - 2 * 24 * 60) * 60  # two days earlier: which dates already fired is known
    fired_dates: set[dt.date] = set()
    out: list[tuple[float, str]] = []
    while len(out) < n:
        t += 60
        local = dt.datetime.fromtimestamp(t, zone)
        if every_minute:
            fires = True
        else:
            fires = local.date() not in fired_dates and local.time().replace(tzinfo=None) >= target
            if fires:
                fired_dates.add(local.date())
        if fires and t > after:
            out.append((float(t), local.isoformat()))
    return out


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def test_both_examples_parse_with_the_settings_their_comments_describe() -> None:
    report, probe = example("nightly-report"), example("health-probe")
    assert (report.id, report.cron, report.time_zone, report.concurrency_policy, report.starting_deadline,
            report.catch_up) == ("nightly-report", "30 2 * * *", "Europe/Berlin", "Forbid", "PT4H", "latest")
    assert (probe.id, probe.cron, probe.time_zone, probe.concurrency_policy, probe.starting_deadline,
            probe.catch_up) == ("health-probe", "* * * * *", "Europe/Berlin", "Forbid", "PT30S", "none")
    assert [s["name"] for s in report.job["stages"]] == ["report"]
    assert [s["name"] for s in probe.job["stages"]] == ["probe"]


def test_the_walk_finds_the_real_2026_and_2027_transitions() -> None:
    assert [dt.datetime.fromtimestamp(t, UTC).isoformat() for t in berlin_transitions(2026) + berlin_transitions(2027)] \
        == ["2026-03-29T01:00:00+00:00", "2026-10-25T01:00:00+00:00",
            "2027-03-28T01:00:00+00:00", "2027-10-31T01:00:00+00:00"]


@pytest.mark.parametrize("year", [2026, 2027])
def test_nightly_report_next_fires_agree_with_the_walk_across_each_transition(year: int) -> None:
    spec = example("nightly-report")
    schedule = schedule_of(spec)
    for transition in berlin_transitions(year):
        after = transition - 3 * 86400
        fires = schedule.next_fires(after, 7)
        assert [(f.at, f.local) for f in fires] == walk_fires(spec.cron or "", BERLIN, after, 7)
        assert [f.key for f in fires] == [f"nightly-report-{int(f.at)}" for f in fires]


def test_nightly_report_on_the_transition_nights_exactly() -> None:
    """What the example's comment says, written out: once per night, 03:00 in spring, the first
    02:30 in autumn."""
    schedule = schedule_of(example("nightly-report"))
    nights = {
        "2026-03-29": ("2026-03-29T03:00:00+02:00", "2026-03-29T01:00:00+00:00"),
        "2026-10-25": ("2026-10-25T02:30:00+02:00", "2026-10-25T00:30:00+00:00"),
        "2027-03-28": ("2027-03-28T03:00:00+02:00", "2027-03-28T01:00:00+00:00"),
        "2027-10-31": ("2027-10-31T02:30:00+02:00", "2027-10-31T00:30:00+00:00"),
    }
    for night, (local, at) in nights.items():
        start = dt.datetime.fromisoformat(night).replace(tzinfo=BERLIN).timestamp()
        end = (dt.datetime.fromisoformat(night) + dt.timedelta(days=1)).replace(tzinfo=BERLIN).timestamp()
        fires = schedule.fires_between(start - 1, end - 1, 10)
        assert [(f.local, dt.datetime.fromtimestamp(f.at, UTC).isoformat()) for f in fires] == [(local, at)], night
    # the nights around: 02:30 local, 01:30Z in winter and 00:30Z in summer
    before, after = schedule.next_fires(utc("2026-03-27T12:00:00+00:00"), 3)[0::2]
    assert (before.local, after.local) == ("2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00")


@pytest.mark.parametrize("year", [2026, 2027])
def test_health_probe_next_fires_agree_with_the_walk_across_each_transition(year: int) -> None:
    spec = example("health-probe")
    schedule = schedule_of(spec)
    for transition in berlin_transitions(year):
        after = transition - 2 * 3600 - 30  # mid-minute: the next fire is the next whole minute
        fires = schedule.next_fires(after, 300)
        walked = walk_fires(spec.cron or "", BERLIN, after, 300)
        assert [(f.at, f.local) for f in fires] == walked
        assert all(b.at - a.at == 60 for a, b in zip(fires, fires[1:]))  # elapsed time: never a gap or a double


def test_health_probe_fires_every_real_minute_on_the_transition_days() -> None:
    """A 23-hour spring day has 1380 fires, a 25-hour autumn day 1500; the repeated 02:xx hour
    fires in both passes, the skipped one in neither."""
    schedule = schedule_of(example("health-probe"))
    for day, count in (("2026-03-29", 1380), ("2026-10-25", 1500), ("2027-03-28", 1380), ("2027-10-31", 1500)):
        start = dt.datetime.fromisoformat(day).replace(tzinfo=BERLIN).timestamp()
        end = (dt.datetime.fromisoformat(day) + dt.timedelta(days=1)).replace(tzinfo=BERLIN).timestamp()
        fires = schedule.fires_between(start - 1, end - 1, 2000)
        assert len(fires) == count, day
        two_thirty = [f.local for f in fires if f.local[11:16] == "02:30"]
        assert two_thirty == ([] if day[5:7] == "03" else [f"{day}T02:30:00+02:00", f"{day}T02:30:00+01:00"])
