"""Cron expressions (day fields, macros, seconds, refusals) and ISO repeating intervals (month
ends, P1D vs PT24H, R5, refusals), exact, against the pitfalls of BATCH_CRON_NOTES."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from tepui.frameworks.cron.expressions import ExpressionError, parse_cron
from tepui.frameworks.cron.fires import Schedule
from tepui.frameworks.cron.intervals import IntervalError, parse_interval

UTC = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def days(expr: str, since: str, n: int) -> list[str]:
    schedule = Schedule("s", parse_cron(expr), UTC)
    return [f.local[:10] for f in schedule.next_fires(at(since), n)]


def test_day_of_month_and_day_of_week_combine_with_or() -> None:
    # days 1 to 7 of April 2024, and every Monday (the 8th, 15th …): POSIX OR, croniter's default
    assert days("0 0 1-7 * 1", "2024-03-31T12:00:00+00:00", 9) == [
        "2024-04-01", "2024-04-02", "2024-04-03", "2024-04-04", "2024-04-05", "2024-04-06", "2024-04-07",
        "2024-04-08", "2024-04-15",
    ]


def test_no_vixie_star_bug_a_step_day_of_month_still_ors() -> None:
    # Vixie reads */2 as unrestricted and ANDs: only Mondays. Here: odd days OR Mondays.
    assert days("0 0 */2 * 1", "2024-04-01T12:00:00+00:00", 4) == ["2024-04-03", "2024-04-05", "2024-04-07", "2024-04-08"]
    # one field restricted: that field alone
    assert days("0 0 * * 1", "2024-04-01T12:00:00+00:00", 2) == ["2024-04-08", "2024-04-15"]


@pytest.mark.parametrize("text", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_impossible_expressions_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError, match="can never match"):
        parse_cron(text)


def test_rare_but_possible_is_accepted_and_the_search_is_bounded() -> None:
    # 04:00 on January 1st or any Friday of January (OR): possible, found at once
    assert days("0 4 1 1 fri", "2024-01-02T00:00:00+00:00", 2) == ["2024-01-05", "2024-01-12"]
    # Feb 29 on a Monday under OR is every Monday in February plus Feb 29 — fine; a leap day alone:
    started = time.monotonic()
    assert days("0 0 29 2 *", "2024-03-01T00:00:00+00:00", 2) == ["2028-02-29", "2032-02-29"]
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("macro", "expression", "elapsed"), [
    ("@yearly", "0 0 1 1 *", False), ("@annually", "0 0 1 1 *", False), ("@monthly", "0 0 1 * *", False),
    ("@weekly", "0 0 * * 0", False), ("@daily", "0 0 * * *", False), ("@midnight", "0 0 * * *", False),
    ("@hourly", "0 * * * *", True), ("@HOURLY", "0 * * * *", True),
])
def test_macros(macro: str, expression: str, elapsed: bool) -> None:
    rule = parse_cron(macro)
    assert (rule.expression, rule.elapsed) == (expression, elapsed)


def test_the_sixth_field_is_seconds_last() -> None:
    schedule = Schedule("s", parse_cron("0 0 * * * 30"), UTC)
    assert [f.local for f in schedule.next_fires(at("2024-01-01T00:00:00+00:00"), 2)] == [
        "2024-01-01T00:00:30+00:00", "2024-01-02T00:00:30+00:00"
    ]
    every = Schedule("e", parse_cron("* * * * * */2"), UTC)
    assert [f.key for f in every.next_fires(at("2024-01-01T00:00:00+00:00"), 3)] == [
        "e-1704067202", "e-1704067204", "e-1704067206"
    ]
    with pytest.raises(ExpressionError):  # Quartz's seconds-first reading: hour 30
        parse_cron("0 30 * * * *")


@pytest.mark.parametrize(("text", "why"), [
    ("@reboot", "unknown macro"), ("0 0 * * * * 2030", "7 fields"), ("0 0 * *", "4 fields"),
    ("R 0 * * *", "random"), ("H * * * *", "hashed"), ("H/5 * * * *", "hashed"), ("61 * * * *", "not a valid"),
])
def test_refused_expressions(text: str, why: str) -> None:
    with pytest.raises(ExpressionError, match=why):
        parse_cron(text)


def test_month_and_day_names_are_not_mistaken_for_random_tokens() -> None:
    assert parse_cron("0 9 * MAR-APR FRI").expression == "0 9 * MAR-APR FRI"
    assert not parse_cron("0 9 * MAR-APR FRI").elapsed


# --- ISO 8601 repeating intervals -------------------------------------------------------------


def interval(text: str, zone: ZoneInfo = UTC) -> Schedule:
    return Schedule("i", parse_interval(text, zone), zone)


def test_months_from_the_start_do_not_drift_at_month_ends() -> None:
    fires = interval("R/2024-01-31T09:00Z/P1M").next_fires(0, 5)
    assert [f.local for f in fires] == [
        "2024-01-31T09:00:00+00:00", "2024-02-29T09:00:00+00:00", "2024-03-31T09:00:00+00:00",
        "2024-04-30T09:00:00+00:00", "2024-05-31T09:00:00+00:00",
    ]
    assert interval("R/2024-02-29T00:00:00Z/P1Y").next_fires(0, 3)[2].local == "2026-02-28T00:00:00+00:00"


def test_p1d_is_a_calendar_day_and_pt24h_is_24_elapsed_hours_across_dst() -> None:
    start = "R/2024-03-09T12:00:00-05:00"
    calendar = interval(start + "/P1D", NY).next_fires(0, 2)
    elapsed = interval(start + "/PT24H", NY).next_fires(0, 2)
    assert [f.local for f in calendar] == ["2024-03-09T12:00:00-05:00", "2024-03-10T12:00:00-04:00"]
    assert calendar[1].at - calendar[0].at == 23 * 3600
    assert [f.local for f in elapsed] == ["2024-03-09T12:00:00-05:00", "2024-03-10T13:00:00-04:00"]
    assert elapsed[1].at - elapsed[0].at == 24 * 3600
    back = interval("R/2024-11-02T12:00:00-04:00/P1D", NY).next_fires(0, 2)
    assert back[1].at - back[0].at == 25 * 3600
    # in UTC (the default zone) a day is always 24 hours
    utc = interval("R/2024-03-09T17:00:00Z/P1D").next_fires(0, 2)
    assert utc[1].at - utc[0].at == 24 * 3600


def test_a_calendar_step_onto_a_skipped_wall_clock_fires_after_the_gap() -> None:
    fires = interval("R/2024-03-09T02:30:00-05:00/P1D", NY).next_fires(0, 3)
    assert [f.local for f in fires] == [
        "2024-03-09T02:30:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"
    ]


def test_r5_stops_after_5() -> None:
    schedule = interval("R5/2024-01-01T00:00:00Z/PT1H")
    fires = schedule.next_fires(0, 10)
    assert len(fires) == 5 and fires[-1].local == "2024-01-01T04:00:00+00:00"
    assert schedule.next_after(fires[-1].at) is None
    assert schedule.count_between(0, at("2030-01-01T00:00:00+00:00")) == 5
    assert schedule.count_between(fires[1].at, fires[3].at) == 2
    assert interval("R5/2024-01-31T00:00:00Z/P1M").count_between(0, at("2030-01-01T00:00:00+00:00")) == 5


def test_next_after_is_strictly_after() -> None:
    schedule = interval("R/2024-01-01T00:00:00Z/P1D")
    assert schedule.next_after(at("2024-01-05T00:00:00+00:00")).local == "2024-01-06T00:00:00+00:00"  # type: ignore[union-attr]  # a fire exists
    assert schedule.next_after(at("2023-01-01T00:00:00+00:00")).local == "2024-01-01T00:00:00+00:00"  # type: ignore[union-attr]  # a fire exists


@pytest.mark.parametrize(("text", "why"), [
    ("R/P1D", "no start"),
    ("R5/P1D/2024-01-01T00:00:00Z", "counts back"),
    ("R/2024-01-01T00:00:00Z/2024-01-02T00:00:00Z", "start>/<end"),
    ("R/2024-01-01T09:00:00/P1D", "no offset"),
    ("R0/2024-01-01T09:00:00Z/P1D", "1 to"),
    ("R/2024-01-01T09:00:00Z/PT0S", "zero"),
    ("R/2024-01-01T09:00:00Z/PT1.5M", "whole units"),
    ("R/2024-01-01T09:00:00.5Z/PT1M", "whole seconds"),
    ("R/2024-01-01T09:00:00Z/P1X", "not an ISO 8601 duration"),
    ("2024-01-01T09:00:00Z/P1D", "write R"),
])
def test_refused_intervals(text: str, why: str) -> None:
    with pytest.raises(IntervalError, match=why):
        parse_interval(text, UTC)


def test_the_start_offset_must_be_the_zones_so_a_utc_start_cannot_shift_the_wall_clock() -> None:
    with pytest.raises(IntervalError, match=r"Europe/Berlin is at \+01:00 then: write 2024-03-01T03:30:00\+01:00"):
        parse_interval("R/2024-03-01T02:30:00Z/P1D", ZoneInfo("Europe/Berlin"))
    good = interval("R/2024-03-01T02:30:00+01:00/P1D", ZoneInfo("Europe/Berlin")).next_fires(0, 2)
    assert [f.local for f in good] == ["2024-03-01T02:30:00+01:00", "2024-03-02T02:30:00+01:00"]
