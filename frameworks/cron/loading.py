"""From what the cron framework's write-ahead store holds to the arguments of
:meth:`~tepui.frameworks.cron.core.CronCore.load`.

Pure (bytes in, values out), so the tests restart the core from exactly what it wrote. The
schedule's spec is stored as data and rebuilt by ``build`` (the spec module's loader in the
shell), so a restart computes fires with the rules of the code that runs, from the spec the
user gave.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from tepui.frameworks.cron.core import NS_FIRES, NS_SCHEDULES, fire_key_of
from tepui.frameworks.cron.definition import ScheduleDef
from tepui.frameworks.cron.records import FireRecord, ScheduleRecord

__all__ = ["LoadedSchedule", "load_schedules"]

LoadedSchedule = tuple[ScheduleDef, ScheduleRecord, list[FireRecord]]


def load_schedules(entries: Mapping[str, Mapping[str, bytes]], build: Callable[[dict[str, Any]], ScheduleDef],
                   unreadable: Callable[[str, str], None] | None = None) -> list[LoadedSchedule]:
    """``entries``: namespace -> key -> the stored JSON. ``unreadable(id, why)``: told of a
    schedule whose stored spec no longer builds, which is then left out (and left in the
    store); without it, the error is raised."""
    fires: dict[str, list[FireRecord]] = {}
    for key, raw in sorted(entries.get(NS_FIRES, {}).items()):
        schedule, _ = fire_key_of(key)
        fires.setdefault(schedule, []).append(msgspec.json.decode(raw, type=FireRecord))
    loaded: list[LoadedSchedule] = []
    for schedule_id, raw in sorted(entries.get(NS_SCHEDULES, {}).items()):
        record = msgspec.json.decode(raw, type=ScheduleRecord)
        try:
            definition = build(record.spec)
        except ValueError as exc:
            if unreadable is None:
                raise
            unreadable(schedule_id, str(exc))
            continue
        loaded.append((definition, record, sorted(fires.get(schedule_id, []), key=lambda f: f.seq)))
    return loaded
