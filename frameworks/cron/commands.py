"""The cron API's commands on the core: create, apply, suspend, resume, trigger, rm.

Each returns ``(answer, effects)``: the shell executes the effects (their Persist first) before
it writes the answer, so a 201 means the schedule is stored. Refusals are
:class:`~tepui.sdk.framework_effects.CommandError`\\ s naming the field at fault.

Decisions where Kubernetes, Chronos and Nomad differ (docs/cron.md):

* ``create`` of an existing id is refused (``apply`` replaces); ``apply`` of a new id creates.
* A schedule fires only after it was created. An ``apply`` that changes the spec first decides
  the fires due until then under the old spec, so the new timeline never reaches back before
  it (an hourly schedule turned per-minute does not make the past hour's minutes due at once).
* ``suspend`` leaves running jobs alone (as Kubernetes). ``resume`` never bursts: the fires
  that fell in the suspension are one MISSED record (reason ``suspended``) whatever
  ``catch_up`` says — catch-up is for the framework's downtime, suspension is a choice.
* ``trigger`` runs the job now, outside the schedule, under the key ``<id>_manual_<unix>`` (the
  underscore, which no schedule id has, keeps it apart from every schedule's fire keys:
  ``<id>-manual-<unix>`` would be the fire of a schedule named ``<id>-manual``);
  it ignores the concurrency policy (a person asked) but counts as a run for the next fires'
  Forbid/Replace. Two triggers in one second are one run (the same key).
* ``rm`` forgets the schedule and its fire records; jobs already submitted run on in the batch
  framework (listed in the answer; ``tepui jobs cancel`` them). It is refused while a fire is
  INTENDED and unconfirmed: forgetting it then could leave a job whose fire no record names.
"""

from __future__ import annotations

from typing import Any

from tepui.frameworks.cron.catch_up import iso
from tepui.frameworks.cron.core import CronCore, ScheduleEntry
from tepui.frameworks.cron.definition import Due, ScheduleDef
from tepui.frameworks.cron.effects import Effect, Publish
from tepui.frameworks.cron.records import ScheduleRecord
from tepui.sdk.framework_effects import CommandError

__all__ = ["apply", "create", "entry_of", "resume", "rm", "suspend", "trigger"]

Answer = tuple[dict[str, Any], list[Effect]]


def entry_of(core: CronCore, schedule_id: str) -> ScheduleEntry:
    entry = core.schedules.get(schedule_id)
    if entry is None:
        raise CommandError(404, "UNKNOWN_SCHEDULE", f"no schedule {schedule_id!r}; `tepui cron list` shows them",
                           "id")
    return entry


def _data(definition: ScheduleDef) -> dict[str, Any]:
    return definition.data if definition.data is not None else {"id": definition.id}


def create(core: CronCore, definition: ScheduleDef, now: float) -> Answer:
    if definition.id in core.schedules:
        raise CommandError(409, "SCHEDULE_EXISTS", f"schedule {definition.id} exists; `tepui cron apply` replaces "
                           "its spec", "id")
    record = ScheduleRecord(id=definition.id, spec=_data(definition), created_at=now, checked_through=now,
                            suspended=definition.suspend, suspended_at=now if definition.suspend else None)
    entry = ScheduleEntry(definition, record)
    core.schedules[definition.id] = entry
    core.put_schedule(entry)
    summary = core.summary(entry)
    return {"schedule": summary, "created": True}, core.finish([Publish("schedule_created", {"schedule": summary})])


def apply(core: CronCore, definition: ScheduleDef, now: float) -> Answer:
    """Replaces the spec (200), or creates the schedule (201 ``created``)."""
    entry = core.schedules.get(definition.id)
    if entry is None:
        return create(core, definition, now)
    out: list[Effect] = []
    record = entry.record
    if _data(definition) != record.spec:
        if not record.suspended:
            core.decide(entry, now, out)  # the fires due until now, under the spec they were due by
        entry.definition = definition
        record.spec = _data(definition)
        entry.next_known = False
    if definition.suspend and not record.suspended:
        _suspend(entry, now)
    elif not definition.suspend and record.suspended:
        _resume(core, entry, now, out)
    core.put_schedule(entry)
    core.submit_due(now, out)
    summary = core.summary(entry)
    out.append(Publish("schedule_updated", {"schedule": summary}))
    return {"schedule": summary, "created": False}, core.finish(out)


def _suspend(entry: ScheduleEntry, now: float) -> None:
    entry.record.suspended, entry.record.suspended_at = True, now


def _resume(core: CronCore, entry: ScheduleEntry, now: float, out: list[Effect]) -> None:
    """The fires since the high-water mark become one MISSED range; the mark moves to now."""
    record, timeline = entry.record, entry.definition.timeline
    after = record.checked_through
    if now > after:
        count = timeline.count_between(after, now)
        first = timeline.next_after(after)
        if count and first is not None:
            since = iso(record.suspended_at if record.suspended_at is not None else after)
            core.missed(entry, first, now, count, f"suspended from {since} to {iso(now)}", now, out)
        record.checked_through = now
    entry.next_known = False
    record.suspended, record.suspended_at = False, None


def suspend(core: CronCore, schedule_id: str, now: float) -> Answer:
    """Idempotent: suspending a suspended schedule answers it as it is."""
    entry = entry_of(core, schedule_id)
    out: list[Effect] = []
    if not entry.record.suspended:
        _suspend(entry, now)
        core.put_schedule(entry)
        out.append(Publish("schedule_updated", {"schedule": core.summary(entry)}))
    return {"schedule": core.summary(entry)}, core.finish(out)


def resume(core: CronCore, schedule_id: str, now: float) -> Answer:
    entry = entry_of(core, schedule_id)
    out: list[Effect] = []
    if entry.record.suspended:
        _resume(core, entry, now, out)
        core.put_schedule(entry)
        out.append(Publish("schedule_updated", {"schedule": core.summary(entry)}))
    return {"schedule": core.summary(entry)}, core.finish(out)


def trigger(core: CronCore, schedule_id: str, now: float) -> Answer:
    """201 with the fire written ahead and its SubmitJob after the Persist (a suspended
    schedule can be triggered: suspension stops the schedule, not a person)."""
    entry = entry_of(core, schedule_id)
    key = f"{schedule_id}_manual_{int(now)}"
    known = entry.fires.get(key)
    if known is not None:
        return {"fire": core.fire_view(known), "created": False}, []
    fire = core.intend(entry, Due(key, float(int(now))), now, manual=True)
    view = core.fire_view(fire)
    out: list[Effect] = [Publish("fire_triggered", {"fire": view})]
    core.submit_due(now, out)
    return {"fire": view, "created": True}, core.finish(out)


def rm(core: CronCore, schedule_id: str, now: float) -> Answer:
    entry = entry_of(core, schedule_id)
    unconfirmed = [f.key for f in core.in_flight(entry) if f.state == "INTENDED"]
    if unconfirmed:
        raise CommandError(409, "FIRE_UNCONFIRMED", f"the batch framework has not confirmed {', '.join(unconfirmed)} "
                           "yet; try again once it answers (`tepui cron suspend` stops new fires meanwhile)", "id")
    running = [f.key for f in core.in_flight(entry)]
    core.forget_schedule(schedule_id)
    return ({"deleted": schedule_id, "running": running},
            core.finish([Publish("schedule_deleted", {"id": schedule_id, "running": running})]))
