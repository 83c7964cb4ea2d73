"""What the cron framework keeps in its write-ahead store: one :class:`ScheduleRecord` per
schedule and one :class:`FireRecord` per fire it decided about.

Why a fire record is written *before* its job is submitted (state INTENDED): the submit and the
store are two systems, and a crash can fall between them. Written first, the record makes a
restart submit the fire again under the same job id, which the batch framework answers with the
job it already has (idempotent submit) — so no fire is lost and none is doubled. The record
holds the exact job spec it submits (``job``), so a re-submission after ``apply`` changed the
template still sends the first spec, never a second spec under the same id.

Instants are float Unix seconds (UTC); a fire's key is its batch job id.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["FireRecord", "ScheduleRecord", "FIRE_STATES", "IN_FLIGHT", "ENDED"]

FIRE_STATES = ("INTENDED", "SUBMITTED", "SUCCEEDED", "FAILED", "MISSED", "CANCELLED")
#: A run of the schedule exists or is about to (Forbid and Replace look at these).
IN_FLIGHT = frozenset({"INTENDED", "SUBMITTED"})
ENDED = frozenset({"SUCCEEDED", "FAILED", "MISSED", "CANCELLED"})


class ScheduleRecord(msgspec.Struct, kw_only=True):
    """One schedule. ``checked_through``: the high-water mark — every fire scheduled at or
    before it has been decided (run or missed), so a restart or a clock stepped back never
    decides it again. ``last_fire_at``: the latest scheduled instant that was run or missed."""

    id: str
    spec: dict[str, Any]
    created_at: float
    checked_through: float
    suspended: bool = False
    suspended_at: float | None = None
    last_fire_at: float | None = None


class FireRecord(msgspec.Struct, kw_only=True):
    """One fire, or — state MISSED with ``count`` > 1 — a run of ``count`` consecutive missed
    fires from ``scheduled_at`` to ``through`` (one record for 10,000 missed fires, not 10,000).

    ``key``: the batch job id (``<schedule>-<unix seconds>``, ``<schedule>_manual_<unix>`` for a
    trigger); for a MISSED range, the key of its first fire. ``submit_after``: jitter delays the
    submit, never the decision. ``replace``: Replace superseded this run before its submit was
    confirmed — cancel it once it is. ``job``: the spec submitted (dropped once the fire ended).
    ``job_state``: the batch job's end state (SUCCEEDED, FAILED, CANCELLED, DEADLINE_EXCEEDED)."""

    schedule: str
    key: str
    scheduled_at: float
    state: str = "INTENDED"
    reason: str = ""
    decided_at: float = 0.0
    submit_after: float = 0.0
    submitted_at: float | None = None
    ended_at: float | None = None
    job_state: str | None = None
    job: dict[str, Any] | None = None
    through: float | None = None
    count: int = 1
    manual: bool = False
    replace: bool = False
    seq: int = 0
