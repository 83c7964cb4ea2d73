"""What the cron API answers about schedules and fires (the values of docs/cron.md "REST API").
Pure: the core and ``now`` in, JSON-ready data out, so every answer is tested exactly.

Why the summary repeats the spec's timing fields (``cron``/``interval``, ``time_zone``,
``concurrency_policy``) with their defaults filled in: ``tepui cron list`` shows them for every
schedule, and the stored spec omits defaults (a schedule in UTC has no ``time_zone`` field).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from tepui.frameworks.cron.catch_up import iso
from tepui.frameworks.cron.core import CronCore, ScheduleEntry
from tepui.frameworks.cron.spec import ScheduleSpec
from tepui.frameworks.cron.wallclock import local_text
from tepui.sdk.framework_effects import CommandError

__all__ = ["MAX_NEXT", "fires_view", "next_view", "parse_n", "schedule_view", "summary_view"]

MAX_NEXT = 1000
_DEFAULTS = ScheduleSpec(id="defaults", job={})  # not validated: only its defaults are read


def summary_view(core: CronCore, entry: ScheduleEntry) -> dict[str, Any]:
    """``core.summary`` plus the spec's timing fields, defaults filled in."""
    spec = entry.record.spec
    return {**core.summary(entry), "cron": spec.get("cron"), "interval": spec.get("interval"),
            "time_zone": spec.get("time_zone", _DEFAULTS.time_zone),
            "concurrency_policy": spec.get("concurrency_policy", _DEFAULTS.concurrency_policy)}


def schedule_view(core: CronCore, entry: ScheduleEntry) -> dict[str, Any]:
    """One schedule: its summary and the full spec as stored."""
    return {**summary_view(core, entry), "spec": entry.record.spec}


def fires_view(core: CronCore, entry: ScheduleEntry) -> list[dict[str, Any]]:
    """The kept records and the fires in flight, newest decision first."""
    return [core.fire_view(f) for f in sorted(entry.fires.values(), key=lambda f: f.seq, reverse=True)]


def next_view(entry: ScheduleEntry, now: float, n: int) -> list[dict[str, Any]]:
    """The next ``n`` fires: after now, or after the high-water mark if the clock is behind it
    (a fire at or before the mark is never run again). Wall clocks in the schedule's zone."""
    zone = ZoneInfo(entry.record.spec.get("time_zone", _DEFAULTS.time_zone))
    out: list[dict[str, Any]] = []
    t = max(now, entry.record.checked_through)
    while len(out) < n:
        fire = entry.definition.timeline.next_after(t)
        if fire is None:
            break
        out.append({"at": fire.at, "utc": iso(fire.at), "local": local_text(fire.at, zone), "key": fire.key})
        t = fire.at
    return out


def parse_n(text: str | None, default: int = 10) -> int:
    if text is None:
        return default
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_NEXT:
        raise CommandError(400, "INVALID_ARGUMENT", f"n={text!r}: write a whole number from 1 to {MAX_NEXT}", "n")
    return n
