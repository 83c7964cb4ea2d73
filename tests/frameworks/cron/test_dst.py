"""DST semantics of cron schedules, exact, in Europe/Berlin, America/New_York and
Australia/Lord_Howe (a 30-minute shift), cross-checked against a minute-by-minute walk.

The rules (frameworks/cron/expressions.py, docs/cron.md "Time zones and DST"): a fixed-time
schedule fires each matching wall-clock time once, at its first occurrence, or at the first instant
after a spring-forward gap; a schedule whose hour field is a wildcard or step fires at every
instant whose wall clock matches (both 01:30s at fall-back, none in the gap)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from tepui.frameworks.cron.expressions import parse_cron
from tepui.frameworks.cron.fires import Schedule
from tepui.frameworks.cron.intervals import parse_interval

UTC = dt.timezone.utc


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def day_fires(expr: str, zone: str, day: str) -> list[tuple[str, str]]:
    """(local with offset, UTC) of every fire on the local ``day``."""
    z = ZoneInfo(zone)
    start = dt.datetime.fromisoformat(day).replace(tzinfo=z).timestamp()
    end = (dt.datetime.fromisoformat(day) + dt.timedelta(days=1)).replace(tzinfo=z).timestamp()
    schedule = Schedule("s", parse_cron(expr), z)
    return [
        (f.local, dt.datetime.fromtimestamp(f.at, UTC).strftime("%H:%MZ"))
        for f in schedule.fires_between(start - 1, end - 1, 100)
    ]


def transitions(zone: str, year: int) -> list[tuple[str, int]]:
    """(local date, shift in minutes) of each offset change in ``year``, found by zoneinfo."""
    z = ZoneInfo(zone)
    t = dt.datetime(year, 1, 1, tzinfo=UTC).timestamp()
    end = dt.datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()
    out, before = [], dt.datetime.fromtimestamp(t, z).utcoffset()
    while t < end:
        t += 900
        now = dt.datetime.fromtimestamp(t, z)
        if now.utcoffset() != before:
            assert before is not None and now.utcoffset() is not None
            out.append((now.date().isoformat(), int((now.utcoffset() - before).total_seconds() // 60)))  # type: ignore[operator]  # checked not None above
            before = now.utcoffset()
    return out


def test_the_transition_dates_are_the_real_ones() -> None:
    assert transitions("America/New_York", 2024) == [("2024-03-10", 60), ("2024-11-03", -60)]
    assert transitions("America/New_York", 2025) == [("2025-03-09", 60), ("2025-11-02", -60)]
    assert transitions("Europe/Berlin", 2024) == [("2024-03-31", 60), ("2024-10-27", -60)]
    assert transitions("Europe/Berlin", 2025) == [("2025-03-30", 60), ("2025-10-26", -60)]
    assert transitions("Australia/Lord_Howe", 2024) == [("2024-04-07", -30), ("2024-10-06", 30)]
    assert transitions("Australia/Lord_Howe", 2025) == [("2025-04-06", -30), ("2025-10-05", 30)]


# --- spring forward ----------------------------------------------------------------------------


def test_new_york_spring_forward_fixed_time_in_the_gap_fires_once_at_the_end_of_the_gap() -> None:
    assert day_fires("30 2 * * *", "America/New_York", "2024-03-10") == [("2024-03-10T03:00:00-04:00", "07:00Z")]
    # every slot of the gap collapses into that one instant (croniter 7 does the same)
    assert day_fires("*/30 2 * * *", "America/New_York", "2024-03-10") == [("2024-03-10T03:00:00-04:00", "07:00Z")]
    # the day before and after: the usual wall clock
    assert day_fires("30 2 * * *", "America/New_York", "2024-03-09") == [("2024-03-09T02:30:00-05:00", "07:30Z")]
    assert day_fires("30 2 * * *", "America/New_York", "2024-03-11") == [("2024-03-11T02:30:00-04:00", "06:30Z")]


def test_new_york_spring_forward_wildcard_hour_skips_the_missing_slot() -> None:
    fires = day_fires("30 * * * *", "America/New_York", "2024-03-10")
    assert fires[:3] == [
        ("2024-03-10T00:30:00-05:00", "05:30Z"),
        ("2024-03-10T01:30:00-05:00", "06:30Z"),
        ("2024-03-10T03:30:00-04:00", "07:30Z"),
    ]
    assert len(fires) == 23


def test_berlin_spring_forward() -> None:
    assert day_fires("30 2 * * *", "Europe/Berlin", "2024-03-31") == [("2024-03-31T03:00:00+02:00", "01:00Z")]
    assert [f[0] for f in day_fires("30 * * * *", "Europe/Berlin", "2024-03-31")][1:3] == [
        "2024-03-31T01:30:00+01:00", "2024-03-31T03:30:00+02:00"
    ]


def test_lord_howe_spring_forward_is_a_30_minute_gap() -> None:
    # 02:00 +10:30 becomes 02:30 +11:00: 02:00 and 02:15 are skipped, 02:30 exists
    assert day_fires("15 2 * * *", "Australia/Lord_Howe", "2024-10-06") == [("2024-10-06T02:30:00+11:00", "15:30Z")]
    assert day_fires("0,15,30,45 2 * * *", "Australia/Lord_Howe", "2024-10-06") == [
        ("2024-10-06T02:30:00+11:00", "15:30Z"),
        ("2024-10-06T02:45:00+11:00", "15:45Z"),
    ]
    assert [f[0] for f in day_fires("15 * * * *", "Australia/Lord_Howe", "2024-10-06")][1:3] == [
        "2024-10-06T01:15:00+10:30", "2024-10-06T03:15:00+11:00"
    ]


# --- fall back ---------------------------------------------------------------------------------


def test_new_york_fall_back_fixed_time_fires_once_at_the_first_0130() -> None:
    assert day_fires("30 1 * * *", "America/New_York", "2024-11-03") == [("2024-11-03T01:30:00-04:00", "05:30Z")]


def test_new_york_fall_back_wildcard_hour_fires_in_both_hours_with_distinct_keys() -> None:
    fires = day_fires("30 * * * *", "America/New_York", "2024-11-03")
    assert fires[:4] == [
        ("2024-11-03T00:30:00-04:00", "04:30Z"),
        ("2024-11-03T01:30:00-04:00", "05:30Z"),
        ("2024-11-03T01:30:00-05:00", "06:30Z"),
        ("2024-11-03T02:30:00-05:00", "07:30Z"),
    ]
    assert len(fires) == 25
    z = ZoneInfo("America/New_York")
    schedule = Schedule("hourly", parse_cron("30 * * * *"), z)
    first, second = schedule.fires_between(at("2024-11-03T05:00:00+00:00"), at("2024-11-03T07:00:00+00:00"), 10)
    assert (first.key, second.key) == ("hourly-1730611800", "hourly-1730615400")
    assert first.local[:19] == second.local[:19] == "2024-11-03T01:30:00"  # a key on the wall clock would merge them


def test_berlin_fall_back() -> None:
    assert day_fires("30 2 * * *", "Europe/Berlin", "2024-10-27") == [("2024-10-27T02:30:00+02:00", "00:30Z")]
    assert [f[0] for f in day_fires("30 * * * *", "Europe/Berlin", "2024-10-27")][2:4] == [
        "2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00"
    ]


def test_lord_howe_fall_back_repeats_30_minutes() -> None:
    # 02:00 +11:00 becomes 01:30 +10:30: 01:30 to 01:59 happen twice
    assert day_fires("45 1 * * *", "Australia/Lord_Howe", "2024-04-07") == [("2024-04-07T01:45:00+11:00", "14:45Z")]
    assert day_fires("15 1 * * *", "Australia/Lord_Howe", "2024-04-07") == [("2024-04-07T01:15:00+11:00", "14:15Z")]
    fires = day_fires("45 * * * *", "Australia/Lord_Howe", "2024-04-07")
    assert fires[1:3] == [("2024-04-07T01:45:00+11:00", "14:45Z"), ("2024-04-07T01:45:00+10:30", "15:15Z")]
    # 01:15 happens once (before the repeat): the wildcard schedule fires it once
    assert [f[0] for f in day_fires("15 * * * *", "Australia/Lord_Howe", "2024-04-07")][1:3] == [
        "2024-04-07T01:15:00+11:00", "2024-04-07T02:15:00+10:30"
    ]


def test_next_after_inside_the_repeated_hour() -> None:
    z = ZoneInfo("America/New_York")
    hourly = Schedule("h", parse_cron("0 * * * *"), z)
    daily = Schedule("d", parse_cron("0 1 * * *"), z)
    t = at("2024-11-03T01:45:00-04:00")  # first pass: the next wall clock is 01:00 again
    assert hourly.next_after(t).local == "2024-11-03T01:00:00-05:00"  # type: ignore[union-attr]  # a fire exists
    assert daily.next_after(t).local == "2024-11-04T01:00:00-05:00"  # type: ignore[union-attr]  # a fire exists


def test_croniter_alone_would_fire_a_fixed_time_twice_at_fall_back() -> None:
    """Why wallclock.py maps the times itself: croniter 7's DST logic (zone from the start)."""
    z = ZoneInfo("America/New_York")
    walk = croniter("30 1 * * *", dt.datetime(2024, 11, 3, 0, 0, tzinfo=z), ret_type=dt.datetime)
    first, second = walk.get_next(), walk.get_next()
    assert (first.isoformat(), second.isoformat()) == ("2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00")


# --- an independent computation ---------------------------------------------------------------


def _field(text: str, low: int, high: int) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        first, last = (low, high) if base == "*" else (int(base.split("-")[0]), int(base.split("-")[-1]))
        out.update(range(first, last + 1, int(step or 1)))
    return out


def oracle(expr: str, zone: str, start: float, end: float) -> list[float]:
    """Minute by minute over UTC instants, with zoneinfo only (no croniter, no wallclock.py):
    fixed-time fires where the wall clock matches on its first pass (fold 0), and at the first
    instant after a gap for the matching wall clocks the gap skipped; wildcard-hour fires at
    every instant whose wall clock matches. Minute and hour fields only (days are ``*``)."""
    minute, hour = expr.split()[:2]
    minutes, hours = _field(minute, 0, 59), _field(hour, 0, 23)
    elapsed = hour.startswith("*") or "/" in hour
    z = ZoneInfo(zone)
    out: list[float] = []
    t = start
    previous = dt.datetime.fromtimestamp(t - 60, z).replace(tzinfo=None)
    while t <= end:
        aware = dt.datetime.fromtimestamp(t, z)
        wall = aware.replace(tzinfo=None, fold=0)
        fires = wall.minute in minutes and wall.hour in hours and (elapsed or aware.fold == 0)
        skipped = wall - previous - dt.timedelta(minutes=1)
        if skipped > dt.timedelta(0) and not elapsed:
            probe = previous + dt.timedelta(minutes=1)
            while probe < wall:
                fires = fires or (probe.minute in minutes and probe.hour in hours)
                probe += dt.timedelta(minutes=1)
        if fires:
            out.append(t)
        previous, t = wall, t + 60
    return out


CASES = [
    ("America/New_York", "2024-03-10"), ("America/New_York", "2024-11-03"),
    ("America/New_York", "2025-03-09"), ("America/New_York", "2025-11-02"),
    ("Europe/Berlin", "2024-03-31"), ("Europe/Berlin", "2024-10-27"),
    ("Australia/Lord_Howe", "2024-04-07"), ("Australia/Lord_Howe", "2024-10-06"),
    ("Australia/Lord_Howe", "2025-04-06"), ("Australia/Lord_Howe", "2025-10-05"),
]
EXPRESSIONS = ["30 2 * * *", "30 1 * * *", "0,15,30,45 1-2 * * *", "30 * * * *", "*/20 * * * *", "5 */2 * * *", "* 2 * * *"]


@pytest.mark.parametrize(("zone", "day"), CASES)
def test_schedules_agree_with_a_minute_by_minute_walk(zone: str, day: str) -> None:
    z = ZoneInfo(zone)
    start = (dt.datetime.fromisoformat(day) - dt.timedelta(days=2)).replace(tzinfo=z).timestamp()
    end = start + 4 * 86400
    for expr in EXPRESSIONS:
        schedule = Schedule("s", parse_cron(expr), z)
        got = [f.at for f in schedule.fires_between(start - 1, end, 10_000)]
        assert got == oracle(expr, zone, start, end), (expr, zone, day)


@pytest.mark.parametrize(("zone", "day"), CASES)
@pytest.mark.parametrize("wall", ["01:15", "01:45", "02:15", "02:30"])
def test_a_p1d_interval_agrees_with_the_walk_of_its_fixed_time(zone: str, day: str, wall: str) -> None:
    """``R/<day-2 at wall>/P1D`` is the calendar day of the fixed-time rule ``M H * * *``."""
    z = ZoneInfo(zone)
    hour, minute = (int(x) for x in wall.split(":"))
    first_day = dt.datetime.fromisoformat(day) - dt.timedelta(days=2)
    start = first_day.replace(hour=hour, minute=minute, tzinfo=z)
    schedule = Schedule("i", parse_interval(f"R/{start.isoformat()}/P1D", z), z)
    got = [f.at for f in schedule.fires_between(start.timestamp() - 1, start.timestamp() + 4 * 86400, 10)]
    walk_from = first_day.replace(tzinfo=z).timestamp()
    assert got == [t for t in oracle(f"{minute} {hour} * * *", zone, walk_from, walk_from + 6 * 86400)
                   if t <= start.timestamp() + 4 * 86400]
