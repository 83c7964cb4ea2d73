"""The cron framework's schedule spec: what a user writes in ``schedule.yaml`` (or JSON).

Why msgspec Structs with ``forbid_unknown_fields`` (as the batch and services specs): a typo
(``time_zon: Europe/Berlin``) must be refused with the field's name, never ignored so that the
schedule silently runs in UTC. Every failure is a :class:`SpecError` naming the field.

Defaults follow the prior art (BATCH_CRON_NOTES §B), tabled in docs/cron.md "Schedule spec":
``time_zone`` UTC (Nomad's default; Kubernetes uses the controller's zone, which is implicit and
the complaint), ``concurrency_policy`` Allow and ``history`` 3/1 (Kubernetes CronJob),
``starting_deadline`` none (Kubernetes: unset; systemd ``Persistent=``: a missed run still runs)
with ``catch_up: latest`` (Kubernetes' v2 controller and systemd: one run for everything missed,
never a burst), ``jitter`` none (systemd ``RandomizedDelaySec=0``).

The job template is kept as data (a mapping with ``stages``): it is a batch job spec, which the
batch framework validates when each fire submits it (this framework imports only the SDK).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import isodate
import msgspec

from tepui.frameworks.cron.expressions import CronRule, ExpressionError, parse_cron
from tepui.frameworks.cron.fires import Schedule
from tepui.frameworks.cron.intervals import IntervalError, RepeatingInterval, parse_interval
from tepui.sdk.spec_documents import SpecError, decode_spec, document_text, field_error

__all__ = ["History", "ScheduleSpec", "SpecError", "load_schedule", "parse_schedule", "schedule_of"]

#: A DNS label: the id starts every fire's job id (``<id>-<unix seconds>``).
_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ZONE = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
_MAX_DOCUMENT = 1 << 20
_MAX_JITTER = 86400.0  # a day: a longer random delay is a different schedule


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Immutable, strict about field names, compact when encoded."""


class History(_Spec, frozen=True):
    """How many ended fires' records to keep (Kubernetes ``successfulJobsHistoryLimit`` 3,
    ``failedJobsHistoryLimit`` 1)."""

    successful: int = 3
    failed: int = 1


class ScheduleSpec(_Spec, frozen=True, kw_only=True):
    """One schedule. Exactly one of ``cron`` and ``interval``."""

    id: str
    cron: str | None = None  # 5 fields, or 6 with seconds last; @hourly … @yearly
    interval: str | None = None  # ISO 8601 R[n]/<start with offset>/<duration> (Chronos)
    time_zone: str = "UTC"  # IANA; every wall clock of the schedule is read in it
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    starting_deadline: str | None = None  # ISO duration; None: a late fire still runs
    catch_up: Literal["none", "latest", "all"] = "latest"
    catch_up_limit: int = 100  # with catch_up all; the rest are recorded missed, counted
    suspend: bool = False
    jitter: str = "PT0S"  # a deterministic delay in [0, jitter) per fire
    history: History = History()
    job: dict[str, Any]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def starting_deadline_seconds(self) -> float | None:
        return None if self.starting_deadline is None else _seconds(self.starting_deadline)

    @property
    def jitter_seconds(self) -> float:
        return _seconds(self.jitter)

    def to_data(self) -> dict[str, Any]:
        """The spec as plain data (what :func:`load_schedule` reads back), for the store."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


def parse_schedule(text: str | bytes, fmt: Literal["yaml", "json"] | None = None) -> ScheduleSpec:
    """Parses and validates a schedule document. Raises :class:`SpecError` naming the field."""
    return load_schedule(decode_spec(document_text(text, _MAX_DOCUMENT), fmt))


def load_schedule(data: object) -> ScheduleSpec:
    """Validates decoded data (a REST body, a stored record) into a :class:`ScheduleSpec`."""
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else type(data).__name__
        raise SpecError("(document)", f"a schedule spec must be a mapping of fields, got {got}")
    try:
        spec = msgspec.convert(data, ScheduleSpec)
    except msgspec.ValidationError as exc:
        raise SpecError(*field_error(str(exc), data, _unknown_hint)) from None
    schedule_of(spec)  # the rule, the zone and the durations
    _check_ranges(spec)
    return spec


def schedule_of(spec: ScheduleSpec) -> Schedule:
    """The :class:`~.fires.Schedule` of a spec. Raises :class:`SpecError` naming the field."""
    if not _ID.match(spec.id):
        raise SpecError("id", f"{spec.id!r}: write a DNS label (a-z, 0-9 and '-', at most 63, no '-' at either end)")
    if (spec.cron is None) == (spec.interval is None):
        raise SpecError("cron", "write exactly one of cron (e.g. '30 2 * * *') and interval (e.g. 'R/2026-01-01T00:00:00Z/PT1H')")
    zone = _zone(spec.time_zone)
    rule: CronRule | RepeatingInterval
    if spec.cron is not None:
        try:
            rule = parse_cron(spec.cron)
        except ExpressionError as exc:
            raise SpecError("cron", str(exc)) from None
    else:
        assert spec.interval is not None
        try:
            rule = parse_interval(spec.interval, zone)
        except IntervalError as exc:
            raise SpecError("interval", str(exc)) from None
    return Schedule(spec.id, rule, zone, _duration_field("jitter", spec.jitter))


def _check_ranges(spec: ScheduleSpec) -> None:
    jitter = _duration_field("jitter", spec.jitter)
    if jitter > _MAX_JITTER:
        raise SpecError("jitter", f"{spec.jitter!r} is more than a day (P1D)")
    if spec.starting_deadline is not None:
        deadline = _duration_field("starting_deadline", spec.starting_deadline)
        if deadline < 1:
            raise SpecError("starting_deadline", "must be at least PT1S, or null for no deadline")
        if jitter >= deadline:
            raise SpecError("jitter", f"{spec.jitter!r} must be shorter than starting_deadline {spec.starting_deadline!r}, or every late draw is missed")
    if not 1 <= spec.catch_up_limit <= 1000:
        raise SpecError("catch_up_limit", f"must be 1 to 1000, got {spec.catch_up_limit}")
    for name, value in (("successful", spec.history.successful), ("failed", spec.history.failed)):
        if not 0 <= value <= 100:
            raise SpecError(f"history.{name}", f"must be 0 to 100, got {value}")
    stages = spec.job.get("stages")
    if not isinstance(stages, list) or not stages:
        raise SpecError("job.stages", "the job template is a batch job spec: it needs a non-empty list of stages")


def _zone(name: str) -> ZoneInfo:
    if not _ZONE.match(name) or name.lower() == "localtime":
        raise SpecError("time_zone", f"{name!r}: write an IANA zone name such as Europe/Berlin or UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SpecError("time_zone", f"{name!r} is not a known IANA zone (e.g. Europe/Berlin, America/New_York, UTC)") from None


def _seconds(text: str) -> float:
    value = isodate.parse_duration(text)
    if isinstance(value, isodate.Duration):
        raise ValueError("years and months have no fixed length")
    return float(value.total_seconds())


def _duration_field(field: str, text: str) -> float:
    """Elapsed seconds of an ISO duration field (``P1D`` is 24 h here: a deadline is elapsed)."""
    try:
        seconds = _seconds(text)
    except (isodate.ISO8601Error, ValueError) as exc:
        raise SpecError(field, f"{text!r} is not an elapsed ISO 8601 duration ({exc}): write e.g. PT30S, PT10M, PT1H") from None
    if seconds < 0:
        raise SpecError(field, f"{text!r} must not be negative")
    return seconds


def _unknown_hint(name: str) -> str:
    close = difflib.get_close_matches(name, ScheduleSpec.__struct_fields__, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
