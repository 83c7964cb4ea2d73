"""Fires: keys, jitter, counting 10,000 missed fires in bounded time and memory, the latest
missed fire, and the zone always from the schedule (never the server's)."""

from __future__ import annotations

import datetime as dt
import re
import time
import tracemalloc
from zoneinfo import ZoneInfo

from tepui.frameworks.cron.expressions import parse_cron
from tepui.frameworks.cron.fires import Fire, Schedule, fire_key, jitter_of
from tepui.frameworks.cron.intervals import parse_interval

UTC = ZoneInfo("UTC")
JOB_ID = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,126}[a-z0-9])?$")


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def test_a_fire_is_its_instant_key_wall_clock_and_due_time() -> None:
    schedule = Schedule("nightly-report", parse_cron("30 2 * * *"), ZoneInfo("Europe/Berlin"))
    fire = schedule.next_after(at("2024-03-30T12:00:00+00:00"))
    assert fire == Fire("nightly-report", 1711846800.0, "2024-03-31T03:00:00+02:00", "nightly-report-1711846800", 1711846800.0)


def test_keys_are_job_ids_even_for_the_longest_schedule_id() -> None:
    longest = "a" * 63
    key = fire_key(longest, 4102444800.0)  # 2100-01-01
    assert key == longest + "-4102444800" and JOB_ID.match(key) and len(key) <= 128


def test_jitter_is_deterministic_bounded_and_moves_only_the_due_time() -> None:
    schedule = Schedule("probe", parse_cron("* * * * *"), UTC, jitter=30.0)
    fires = schedule.next_fires(at("2024-01-01T00:00:00+00:00"), 200)
    again = Schedule("probe", parse_cron("* * * * *"), UTC, jitter=30.0).next_fires(at("2024-01-01T00:00:00+00:00"), 200)
    assert fires == again  # a restart computes the same delays
    delays = [f.due - f.at for f in fires]
    assert all(0 <= d < 30 for d in delays) and len({round(d, 3) for d in delays}) > 150
    assert [f.key for f in fires[:2]] == ["probe-1704067260", "probe-1704067320"]
    assert fires[0].due == fires[0].at + jitter_of("probe-1704067260", 30.0)
    assert jitter_of("probe-1704067260", 0.0) == 0.0


def test_ten_thousand_missed_fires_are_counted_in_bounded_time_and_memory() -> None:
    schedule = Schedule("every-minute", parse_cron("* * * * *"), ZoneInfo("America/New_York"))
    down = at("2024-03-08T00:00:00+00:00")  # downtime across the spring-forward of 03-10
    back = down + 10_000 * 60
    started = time.monotonic()  # about 0.25 s on one core; tracemalloc would slow it tenfold
    count = schedule.count_between(down, back)
    first = schedule.fires_between(down, back, 100)
    latest = schedule.last_between(down, back)
    elapsed = time.monotonic() - started
    tracemalloc.start()
    schedule.count_between(down, back)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 10_000  # elapsed-time rule: one per minute, the gap has no minutes to skip
    assert len(first) == 100 and first[0].at == down + 60
    assert latest is not None and latest.at == back
    assert peak < 2_000_000, peak
    assert elapsed < 5, elapsed
    assert schedule.count_between(down, back, cap=500) == 500


def test_an_interval_counts_arithmetically() -> None:
    schedule = Schedule("i", parse_interval("R/2020-01-01T00:00:00Z/PT1S", UTC), UTC)
    started = time.monotonic()
    assert schedule.count_between(at("2020-01-01T00:00:00+00:00"), at("2021-01-01T00:00:00+00:00"), cap=10**9) == 366 * 86400
    assert schedule.count_between(0, at("2021-01-01T00:00:00+00:00")) == 1_000_000  # COUNT_CAP
    monthly = Schedule("m", parse_interval("R/2000-01-31T00:00:00Z/P1M", UTC), UTC)
    assert monthly.count_between(0, at("2100-01-31T00:00:00+00:00")) == 1201
    assert monthly.last_between(0, at("2024-03-30T00:00:00+00:00")).local == "2024-02-29T00:00:00+00:00"  # type: ignore[union-attr]  # a fire exists
    assert time.monotonic() - started < 1


def test_last_between_finds_the_latest_and_none_when_empty() -> None:
    yearly = Schedule("y", parse_cron("0 0 1 1 *"), UTC)
    assert yearly.last_between(at("2020-06-01T00:00:00+00:00"), at("2024-06-01T00:00:00+00:00")).local == "2024-01-01T00:00:00+00:00"  # type: ignore[union-attr]  # a fire exists
    assert yearly.last_between(at("2024-01-01T00:00:00+00:00"), at("2024-06-01T00:00:00+00:00")) is None
    assert yearly.fires_between(at("2024-01-01T00:00:00+00:00"), at("2024-01-01T00:00:00+00:00"), 10) == []


def test_the_zone_comes_from_the_schedule_never_the_server(monkeypatch: object) -> None:
    """Instants in, instants out: the same schedule gives the same fires whatever TZ says."""
    import os
    base = at("2024-06-01T00:00:00+00:00")
    berlin = Schedule("b", parse_cron("0 9 * * *"), ZoneInfo("Europe/Berlin"))
    before = berlin.next_after(base)
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        assert berlin.next_after(base) == before
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
    assert before is not None and before.local == "2024-06-01T09:00:00+02:00"
    # in UTC the same expression is 09:00Z: a UTC schedule is not a Berlin one
    assert Schedule("u", parse_cron("0 9 * * *"), UTC).next_after(base).local == "2024-06-01T09:00:00+00:00"  # type: ignore[union-attr]  # a fire exists


def test_a_manual_fire_is_keyed_on_its_whole_second() -> None:
    schedule = Schedule("s", parse_cron("@daily"), UTC)
    assert schedule.fire(1704067200.75).key == "s-1704067200"
