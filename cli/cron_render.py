"""``tepui cron``'s tables and fields (rich), from the client's typed views.

Why every time is shown in the schedule's zone *with its offset*, and the UTC time beside it
where a fire is listed: a schedule is written in wall-clock time, but on a DST night the wall
clock lies — the two 02:30s of a fall-back differ only by their offset, and a spring-forward's
02:30 is printed as the 03:00 it becomes. The offset makes each row unambiguous, and the UTC
column is what the logs and the batch framework's history show.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import Console
from rich.markup import escape

from tepui.cli.apps_render import console, table
from tepui.frameworks.cron.client_values import Fire, NextFire, Schedule

__all__ = ["console", "local", "relative", "render_fires", "render_next", "render_schedule", "render_schedules",
           "utc"]

_UTC = dt.timezone.utc


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a zone this machine's tzdata lacks: UTC, marked
        return _UTC


def local(at: float | None, zone: str) -> str:
    """``2026-03-29 03:00:00+02:00``: the wall clock in ``zone`` with its offset; ``-`` unknown."""
    if at is None:
        return "-"
    text = dt.datetime.fromtimestamp(at, _zone(zone)).isoformat(sep=" ")
    return text.replace("+00:00", "Z") if zone == "UTC" else text


def utc(at: float | None) -> str:
    """``2026-03-29 01:00:00Z``; ``-`` unknown."""
    return "-" if at is None else dt.datetime.fromtimestamp(at, _UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def relative(at: float | None, now: float) -> str:
    """``in 5h 2m``, ``in 42s``, ``3d 4h ago``: two units at most."""
    if at is None:
        return "-"
    seconds = int(round(at - now))
    rest, parts = abs(seconds), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
        if len(parts) == 2:
            break
    text = " ".join(parts)
    return f"in {text}" if seconds > 0 else "now" if seconds == 0 else f"{text} ago"


def _ended_state(fire: Fire) -> str:
    """The record's state, and the job's when it says more (a FAILED fire whose job exceeded its
    deadline)."""
    if fire.job_state and fire.job_state != fire.state:
        return f"{fire.state} ({fire.job_state})"
    return fire.state


def last_run(schedule: Schedule) -> str:
    run = schedule.last_run
    text = "-" if run is None else \
        f"{_ended_state(run)} {local(run.scheduled_at, schedule.time_zone)} {run.key}"
    if schedule.running:
        text = (f"running {schedule.running[0]}" if run is None else f"{text}; running") + \
            (f" (+{len(schedule.running) - 1})" if len(schedule.running) > 1 else "")
    return text


def next_text(schedule: Schedule, now: float) -> str:
    if schedule.suspended:
        return "suspended"
    if schedule.next_fire_at is None:
        return "none left"
    return f"{local(schedule.next_fire_at, schedule.time_zone)} ({relative(schedule.next_fire_at, now)})"


def render_schedules(schedules: list[Schedule], out: Console, now: float) -> None:
    rows = table(None, [("ID", "left"), ("SCHEDULE", "left"), ("ZONE", "left"), ("POLICY", "left"),
                        ("SUSPENDED", "left"), ("LAST RUN", "left"), ("NEXT", "left")])
    for s in schedules:
        rows.add_row(escape(s.id), escape(s.rule), escape(s.time_zone), escape(s.concurrency_policy),
                     "yes" if s.suspended else "no", escape(last_run(s)), escape(next_text(s, now)))
    out.print(rows)


def render_schedule(schedule: Schedule, fires: list[Fire], out: Console, now: float, recent: int = 5) -> None:
    """``show``: the spec's settings, the last run and the next fire, then the newest fires."""
    spec: dict[str, Any] = dict(schedule.spec or {})
    zone = schedule.time_zone
    facts: list[tuple[str, Any]] = [
        ("schedule", schedule.id),
        ("cron" if schedule.cron else "interval", schedule.rule),
        ("time zone", zone),
        ("policy", schedule.concurrency_policy),
        ("deadline", spec.get("starting_deadline") or "none (a late fire still runs)"),
        ("catch-up", spec.get("catch_up", "latest") + (f", at most {spec['catch_up_limit']}"
                                                         if spec.get("catch_up") == "all" and "catch_up_limit" in spec
                                                         else "")),
        ("jitter", spec.get("jitter") if spec.get("jitter") not in (None, "PT0S") else None),
        ("suspended", f"yes (`tepui cron resume {schedule.id}` fires again)" if schedule.suspended else "no"),
        ("job", (spec.get("job") or {}).get("name") if isinstance(spec.get("job"), dict) else None),
        ("last run", last_run(schedule)),
        ("next fire", next_text(schedule, now) if schedule.suspended or schedule.next_fire_at is None else
         f"{local(schedule.next_fire_at, zone)} = {utc(schedule.next_fire_at)} "
         f"({relative(schedule.next_fire_at, now)})"),
    ]
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        if value is not None:
            out.print(f"[bold]{name:<{width}}[/bold]  {escape(str(value))}", soft_wrap=True)
    if fires:
        render_fires(fires[:recent], zone, out, f"Recent fires (newest first; `tepui cron history {schedule.id}` "
                                                f"lists all {len(fires)})" if len(fires) > recent else
                     "Recent fires (newest first)")


def render_next(fires: list[NextFire], zone: str, out: Console) -> None:
    """``next``: each fire's wall clock in the zone and in UTC; a row whose offset differs from
    the row before is marked, so a DST change between two fires is seen, not guessed."""
    rows = table(None, [(f"LOCAL ({zone})", "left"), ("UTC", "left"), ("KEY", "left"), ("NOTE", "left")])
    before: str | None = None
    for fire in fires:
        offset = _offset(fire.local)
        note = f"offset {before} → {offset}" if before is not None and offset != before else ""
        rows.add_row(escape(fire.local.replace("T", " ")), escape(utc(fire.at)), escape(fire.key), escape(note))
        before = offset
    out.print(rows)


def _offset(iso: str) -> str:
    return "Z" if iso.endswith("Z") else iso[-6:]


def render_fires(fires: list[Fire], zone: str, out: Console, title: str | None = None) -> None:
    """``history``: one row per fire record, newest first; a MISSED range counts its fires."""
    rows = table(title, [("KEY", "left"), (f"SCHEDULED ({zone})", "left"), ("UTC", "left"), ("STATE", "left"),
                         ("JOB STATE", "left"), ("REASON", "left")])
    rows.columns[-1].no_wrap = False  # a catch-up's reason is a sentence: it wraps, the ids and times do not
    for fire in fires:
        state = fire.state + (f" ×{fire.count}" if fire.count > 1 else "") + (" (manual)" if fire.manual else "")
        reason = fire.reason
        if fire.count > 1 and fire.through is not None:
            reason = f"{reason}; fires up to {local(fire.through, zone)}" if reason else f"fires up to {local(fire.through, zone)}"
        rows.add_row(escape(fire.key), escape(local(fire.scheduled_at, zone)), escape(utc(fire.scheduled_at)),
                     escape(state), escape(fire.job_state or "-"), escape(reason or "-"))
    out.print(rows)
