"""The cron framework's core: schedules whose fires become batch jobs, each exactly once.

A pure state machine, as the batch core: every event — a tick, a command (:mod:`.commands`),
the shell's answer to a submit (:meth:`CronCore.submitted`, :meth:`CronCore.submit_failed`), a
batch job's end (:meth:`CronCore.job_ended`) — comes with ``now`` and returns the effects to
execute (:mod:`.effects`), a :class:`~.effects.Persist` first.

Exactly once, and what it rests on (docs/cron.md, "Exactly once"):

* each fire has a deterministic key, its batch job id, from the schedule and the UTC instant;
* a fire is decided once: a schedule's high-water mark (``checked_through``) says every fire
  at or before it was decided (run or missed), and only moves forward — a clock stepped back
  re-decides nothing;
* a fire to run is written ahead (FireRecord INTENDED, with the exact job spec, and the new
  high-water mark) in the Persist that precedes its :class:`~.effects.SubmitJob`;
* an INTENDED fire is submitted until the batch framework answers — again after a restart —
  and the batch framework's submit is idempotent on the id, so a submit that did reach it before
  a crash is answered ``created: false`` the second time.

Tick-based, as the batch core (``tick(now)`` every second): a schedule costs one comparison per
tick until its next fire (cached), and writes nothing between fires.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tepui.frameworks.cron.catch_up import Missed, iso, plan
from tepui.frameworks.cron.definition import FireLike, ScheduleDef
from tepui.frameworks.cron.effects import CancelJob, Effect, Persist, Publish, SubmitJob
from tepui.frameworks.cron.records import ENDED, IN_FLIGHT, FireRecord, ScheduleRecord

__all__ = ["CronConfig", "CronCore", "ScheduleEntry", "NS_SCHEDULES", "NS_FIRES", "fire_key_of"]

NS_SCHEDULES, NS_FIRES = "schedules", "fires"  # keys: schedule id; ``<schedule>/<fire key>``

#: The batch job states a fire's record takes when its job ends (DEADLINE_EXCEEDED is a failure;
#: UNKNOWN: the batch framework forgot the job, its ttl past, before its end was seen).
JOB_END_STATES = {"SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED", "DEADLINE_EXCEEDED": "FAILED",
                  "CANCELLED": "CANCELLED", "UNKNOWN": "FAILED"}


@dataclass(frozen=True)
class CronConfig:
    """``on_time``: a fire found this many seconds late is still on time (not downtime).
    ``retry_*``: the backoff of a submit the batch framework did not answer (doubling).
    ``missed_kept``: MISSED records kept per schedule (each may be a range of many fires)."""

    on_time: float = 10.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    missed_kept: int = 10


def fire_key_of(store_key: str) -> tuple[str, str]:
    schedule, _, key = store_key.partition("/")
    return schedule, key


@dataclass
class ScheduleEntry:
    definition: ScheduleDef
    record: ScheduleRecord
    fires: dict[str, FireRecord] = field(default_factory=dict)  # key -> record, in decision order
    next_at: float | None = None  # the first fire after checked_through (None: none, or unknown)
    next_known: bool = False


class CronCore:
    def __init__(self, config: CronConfig = CronConfig()) -> None:
        self.config = config
        self.schedules: dict[str, ScheduleEntry] = {}
        self.by_key: dict[str, str] = {}  # fire key -> schedule id, for the shell's answers
        self._puts: dict[tuple[str, str], msgspec.Struct] = {}
        self._deletes: set[tuple[str, str]] = set()
        self._prefixes: list[tuple[str, str]] = []
        self._asked: set[str] = set()  # INTENDED fires whose submit awaits the shell's answer
        self._retry: dict[str, tuple[int, float, float]] = {}  # key -> (failures, failed at, next try at)
        self._cancel: list[str] = []  # replaced jobs whose cancel a restart may have lost: asked again
        self._seq = 0

    # --- loading ------------------------------------------------------------------------------

    def load(self, schedules: Iterable[tuple[ScheduleDef, ScheduleRecord, list[FireRecord]]], now: float) -> None:
        """What the store held (:func:`~.loading.load_schedules`). Every INTENDED fire is
        submitted again at the first tick: its earlier submit may or may not have reached the
        batch framework, which answers a repeat with the job it has. So is the cancel of every
        replaced job not known to have ended (a cancel of an ended job is refused, harmlessly)."""
        for definition, record, fires in schedules:
            entry = ScheduleEntry(definition, record)
            for fire in sorted(fires, key=lambda f: (f.seq, f.scheduled_at)):
                entry.fires[fire.key] = fire
                self.by_key[fire.key] = record.id
                self._seq = max(self._seq, fire.seq)
                if fire.replace and fire.state == "SUBMITTED":
                    self._cancel.append(fire.key)
            self.schedules[record.id] = entry

    # --- batches ------------------------------------------------------------------------------

    def put_schedule(self, entry: ScheduleEntry) -> None:
        self._puts[(NS_SCHEDULES, entry.record.id)] = entry.record

    def put_fire(self, fire: FireRecord) -> None:
        self._puts[(NS_FIRES, f"{fire.schedule}/{fire.key}")] = fire

    def forget_schedule(self, schedule_id: str) -> None:
        entry = self.schedules.pop(schedule_id)
        for key in entry.fires:
            self.by_key.pop(key, None)
            self._asked.discard(key)
            self._retry.pop(key, None)
        for k in [k for k in self._puts if k == (NS_SCHEDULES, schedule_id) or k[1].startswith(schedule_id + "/")]:
            del self._puts[k]
        self._deletes.add((NS_SCHEDULES, schedule_id))
        self._prefixes.append((NS_FIRES, schedule_id + "/"))

    def finish(self, out: list[Effect]) -> list[Effect]:
        """The batch's effects, its Persist first (write-ahead)."""
        if not self._puts and not self._deletes and not self._prefixes:
            return out
        # copies: the records live on in the core and change; the Persist says what was written
        persist = Persist(tuple((ns, key, msgspec.structs.replace(value)) for (ns, key), value in self._puts.items()),
                          tuple(sorted(self._deletes)), tuple(self._prefixes))
        self._puts, self._deletes, self._prefixes = {}, set(), []
        return [persist, *out]

    # --- events -------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = [CancelJob(key) for key in self._cancel]
        self._cancel = []
        for entry in list(self.schedules.values()):
            if not entry.record.suspended:
                self.decide(entry, now, out)
        self.submit_due(now, out)
        return self.finish(out)

    def submitted(self, key: str, now: float) -> list[Effect]:
        """The batch framework has the job (201, or 200 ``created: false`` for a repeat)."""
        fire = self._fire(key)
        self._asked.discard(key)
        self._retry.pop(key, None)
        out: list[Effect] = []
        if fire is None or fire.state != "INTENDED":
            return out  # a repeated answer, or the schedule was removed
        fire.state, fire.submitted_at = "SUBMITTED", now
        self.put_fire(fire)
        out.append(Publish("fire_submitted", {"fire": self.fire_view(fire)}))
        if fire.replace:  # a newer fire replaced it while its submit was unconfirmed
            out.append(CancelJob(key))
        return self.finish(out)

    def submit_failed(self, key: str, why: str, retryable: bool, now: float) -> list[Effect]:
        """The submit did not create the job. ``retryable`` (no answer, 5xx, 429): submitted
        again with backoff, however long it takes — the fire was decided, and only the batch
        framework knows whether an unanswered submit arrived. Otherwise (400, 409 JOB_EXISTS
        with another spec): the fire is FAILED with the batch framework's reason."""
        fire = self._fire(key)
        self._asked.discard(key)
        if fire is None or fire.state != "INTENDED":
            return []
        if retryable:
            failures = self._retry.get(key, (0, now, now))[0] + 1
            wait = min(self.config.retry_initial * 2 ** (failures - 1), self.config.retry_max)
            self._retry[key] = (failures, now, now + wait)
            return []
        self._retry.pop(key, None)
        fire.state, fire.reason, fire.ended_at, fire.job = "FAILED", f"submit refused: {why}", now, None
        out: list[Effect] = []
        self._ended(fire, now, out)
        return self.finish(out)

    def job_ended(self, job_id: str, state: str, now: float) -> list[Effect]:
        """A batch job of ours ended (the batch event ``job_ended``, or a poll of its state)."""
        fire = self._fire(job_id)
        if fire is None or fire.state in ENDED or state not in JOB_END_STATES:
            return []
        if fire.state == "INTENDED":  # its end is news that the submit arrived
            self._asked.discard(job_id)
            self._retry.pop(job_id, None)
            fire.submitted_at = now
        fire.state, fire.job_state, fire.ended_at, fire.job = JOB_END_STATES[state], state, now, None
        out: list[Effect] = []
        self._ended(fire, now, out)
        return self.finish(out)

    # --- reads --------------------------------------------------------------------------------

    def following(self) -> list[str]:
        """The batch jobs whose ends the shell follows (submitted, not ended)."""
        return [f.key for e in self.schedules.values() for f in e.fires.values() if f.state == "SUBMITTED"]

    def in_flight(self, entry: ScheduleEntry) -> list[FireRecord]:
        return [f for f in entry.fires.values() if f.state in IN_FLIGHT]

    def next_fire(self, entry: ScheduleEntry) -> float | None:
        if not entry.next_known:
            due = entry.definition.timeline.next_after(entry.record.checked_through)
            entry.next_at, entry.next_known = (due.at if due is not None else None), True
        return entry.next_at

    def fire_view(self, fire: FireRecord) -> dict[str, Any]:
        view: dict[str, Any] = msgspec.to_builtins(fire)
        view.pop("job", None)
        return view

    def summary(self, entry: ScheduleEntry) -> dict[str, Any]:
        record = entry.record
        ended = [f for f in entry.fires.values() if f.state in ENDED and f.state != "MISSED"]
        nxt = self.next_fire(entry)
        return {"id": record.id, "suspended": record.suspended, "last_fire_at": record.last_fire_at,
                "next_fire_at": None if record.suspended else nxt,
                "running": [f.key for f in self.in_flight(entry)],
                "last_run": self.fire_view(ended[-1]) if ended else None}

    # --- decisions ----------------------------------------------------------------------------

    def _fire(self, key: str) -> FireRecord | None:
        schedule = self.by_key.get(key)
        entry = self.schedules.get(schedule) if schedule is not None else None
        return entry.fires.get(key) if entry is not None else None

    def decide(self, entry: ScheduleEntry, now: float, out: list[Effect]) -> None:
        record = entry.record
        nxt = self.next_fire(entry)
        if now <= record.checked_through:
            return  # the clock stepped back: nothing at or before the high-water mark again
        if nxt is None or nxt > now:
            record.checked_through = now  # in memory only: no fire was decided, nothing to redo
            return
        decided = plan(entry.definition.timeline, entry.definition.policy, record.checked_through, now,
                       self.config.on_time)
        record.checked_through = now
        entry.next_known = False
        runs, missed = list(decided.run), list(decided.missed)
        concurrency, active = entry.definition.policy.concurrency, self.in_flight(entry)
        if len(runs) > 1 and concurrency == "Replace":  # each would replace the one before it
            missed.append(Missed(runs[0], runs[-2].at, len(runs) - 1,
                                 f"replace: superseded by {runs[-1].key}, due in the same catch-up"))
            runs = runs[-1:]
        if runs and concurrency == "Forbid" and (active or len(runs) > 1):  # one record, not one per fire
            blocked = runs if active else runs[1:]
            running = ", ".join(f.key for f in active) if active else runs[0].key
            missed.append(Missed(blocked[0], blocked[-1].at, len(blocked), f"forbid: {running} still running"))
            runs = [] if active else runs[:1]
        events: list[tuple[float, Missed | FireLike]] = [(m.first.at, m) for m in missed]
        events += [(d.at, d) for d in runs]
        for _, item in sorted(events, key=lambda e: e[0]):
            if isinstance(item, Missed):
                self.missed(entry, item.first, item.through, item.count, item.reason, now, out)
            else:
                self._run(entry, item, now, out)
        self.put_schedule(entry)

    def _run(self, entry: ScheduleEntry, due: FireLike, now: float, out: list[Effect]) -> None:
        """Concurrency policy, then the write-ahead record of a fire to run."""
        policy, active = entry.definition.policy.concurrency, self.in_flight(entry)
        if active and policy == "Forbid":
            running = ", ".join(f.key for f in active)
            self.missed(entry, due, due.at, 1, f"forbid: {running} still running", now, out)
            return
        if active and policy == "Replace":
            for f in active:
                f.replace, f.reason = True, f"replaced by {due.key}"
                self.put_fire(f)
                if f.state == "SUBMITTED":
                    out.append(CancelJob(f.key))  # an INTENDED one is cancelled once submitted
        self.intend(entry, due, now, manual=False)

    def intend(self, entry: ScheduleEntry, due: FireLike, now: float, manual: bool) -> FireRecord:
        """Writes the fire ahead (INTENDED, with its job spec); its SubmitJob follows the
        Persist at this tick or, with jitter, at the tick that reaches ``submit_after``."""
        self._seq += 1
        fire = FireRecord(schedule=entry.record.id, key=due.key, scheduled_at=due.at, decided_at=now,
                          submit_after=due.at + entry.definition.jitter(due.key) if not manual else now,
                          job=entry.definition.job, manual=manual, seq=self._seq)
        entry.fires[due.key] = fire
        self.by_key[due.key] = entry.record.id
        if not manual:
            entry.record.last_fire_at = max(entry.record.last_fire_at or due.at, due.at)
        self.put_fire(fire)
        return fire

    def missed(self, entry: ScheduleEntry, first: FireLike, through: float, count: int, reason: str, now: float,
               out: list[Effect]) -> None:
        self._seq += 1
        fire = FireRecord(schedule=entry.record.id, key=first.key, scheduled_at=first.at, state="MISSED",
                          reason=reason, decided_at=now, ended_at=now, through=through, count=count, seq=self._seq)
        entry.fires[first.key] = fire
        self.by_key[first.key] = entry.record.id
        entry.record.last_fire_at = max(entry.record.last_fire_at or through, through)
        self.put_fire(fire)
        out.append(Publish("fire_missed", {"fire": self.fire_view(fire),
                                           "schedule": entry.record.id, "since": iso(first.at)}))
        self._prune(entry)

    def submit_due(self, now: float, out: list[Effect]) -> None:
        for entry in self.schedules.values():
            for fire in entry.fires.values():
                if fire.state != "INTENDED" or fire.key in self._asked:
                    continue
                if fire.decided_at <= now < fire.submit_after:  # jitter (a clock stepped back waits not)
                    continue
                retry = self._retry.get(fire.key)
                if retry is not None and retry[1] <= now < retry[2]:
                    continue
                assert fire.job is not None, "an INTENDED fire keeps its job spec"
                self._asked.add(fire.key)
                out.append(SubmitJob(fire.key, fire.job, entry.record.id))

    def _ended(self, fire: FireRecord, now: float, out: list[Effect]) -> None:
        self.put_fire(fire)
        out.append(Publish("fire_ended", {"fire": self.fire_view(fire)}))
        entry = self.schedules.get(fire.schedule)
        if entry is not None:
            self._prune(entry)

    def _prune(self, entry: ScheduleEntry) -> None:
        """History limits: the newest ``successful_history`` SUCCEEDED, ``failed_history``
        FAILED or CANCELLED, and ``missed_kept`` MISSED records of the schedule stay."""
        policy = entry.definition.policy
        limits = {"SUCCEEDED": policy.successful_history, "FAILED": policy.failed_history,
                  "CANCELLED": policy.failed_history, "MISSED": self.config.missed_kept}
        buckets: dict[str, list[FireRecord]] = {"SUCCEEDED": [], "FAILED": [], "MISSED": []}
        for fire in entry.fires.values():
            if fire.state in ENDED:
                buckets["FAILED" if fire.state == "CANCELLED" else fire.state].append(fire)
        for state, fires in buckets.items():
            for old in sorted(fires, key=lambda f: f.seq)[:max(len(fires) - limits[state], 0)]:
                del entry.fires[old.key]
                self.by_key.pop(old.key, None)
                self._puts.pop((NS_FIRES, f"{old.schedule}/{old.key}"), None)
                self._deletes.add((NS_FIRES, f"{old.schedule}/{old.key}"))
