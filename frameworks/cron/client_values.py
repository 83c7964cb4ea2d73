"""What :mod:`tepui.frameworks.cron.client` gives back: typed views of the cron API's JSON
(``Schedule``, ``Fire``, ``NextFire``) and the one error class.

Why typed views (as the batch client's): ``schedule.next_fire_at`` completes in a notebook and a
missing key is a default, not a ``KeyError`` — an older framework is not a crash. Each view keeps
the answer it was read from in ``data``. Pure: no I/O, so the CLI's renderers use it freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["EXIT_REFUSED", "EXIT_UNREACHABLE", "CronError", "Fire", "NextFire", "Schedule"]

#: ``tepui cron``'s exit codes: the API said no (1), or could not be reached (4) — a script tells
#: a wrong schedule from a dead cluster, as with ``tepui jobs``.
EXIT_REFUSED, EXIT_UNREACHABLE = 1, 4

#: Reasons that mean "the cron API is not there" rather than "it said no": the master's proxy
#: errors (master/http/framework_proxy.py) and no answer at all.
UNREACHABLE_REASONS = frozenset({"UNREACHABLE", "UNKNOWN_FRAMEWORK", "FRAMEWORK_UNREACHABLE", "FRAMEWORK_TIMEOUT",
                                 "FRAMEWORK_NO_API", "RELAY_LIMIT"})


class CronError(Exception):
    """Any failure of a cron API call. ``status``: the HTTP status (None: no answer came);
    ``reason``: the API's machine-readable reason (``INVALID_SPEC``, ``SCHEDULE_EXISTS``,
    ``UNKNOWN_SCHEDULE``, ``FIRE_UNCONFIRMED``..., ``UNREACHABLE`` when nothing answered);
    ``field``: the spec field at fault; ``hint``: what to do next. ``str()`` is all of it in one
    paragraph, so a traceback already says what to do."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.reason, self.field, self.hint = message, status, reason, field, hint

    @property
    def unreachable(self) -> bool:
        """The API could not be reached (or the framework is not running), as opposed to refusing."""
        return self.reason in UNREACHABLE_REASONS or (self.reason is None and self.status in (502, 503, 504))

    @property
    def exit_code(self) -> int:
        return EXIT_UNREACHABLE if self.unreachable else EXIT_REFUSED

    def __str__(self) -> str:
        return self.message + (f" (field: {self.field})" if self.field else "") + (f" {self.hint}" if self.hint else "")


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Fire:
    """One fire's record (frameworks/cron/records.py FireRecord): ``key`` is its batch job id;
    ``state`` INTENDED, SUBMITTED, SUCCEEDED, FAILED, MISSED or CANCELLED; a MISSED record with
    ``count`` > 1 stands for the fires from ``scheduled_at`` to ``through``."""

    schedule: str
    key: str
    scheduled_at: float | None
    state: str
    reason: str = ""
    decided_at: float | None = None
    submitted_at: float | None = None
    ended_at: float | None = None
    job_state: str | None = None
    through: float | None = None
    count: int = 1
    manual: bool = False
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fire:
        count = data.get("count")
        return cls(schedule=str(data.get("schedule") or ""), key=str(data.get("key") or ""),
                   scheduled_at=_float(data.get("scheduled_at")), state=str(data.get("state") or "INTENDED"),
                   reason=str(data.get("reason") or ""), decided_at=_float(data.get("decided_at")),
                   submitted_at=_float(data.get("submitted_at")), ended_at=_float(data.get("ended_at")),
                   job_state=_text(data.get("job_state")), through=_float(data.get("through")),
                   count=count if isinstance(count, int) and not isinstance(count, bool) else 1,
                   manual=bool(data.get("manual")), data=dict(data))


@dataclass(frozen=True)
class Schedule:
    """A schedule as the API answers it: the core's summary plus the spec's ``cron`` or
    ``interval``, ``time_zone`` and ``concurrency_policy`` (and the whole ``spec`` from ``get``).
    ``next_fire_at`` is None when suspended or when the schedule has no fire left."""

    id: str
    cron: str | None = None
    interval: str | None = None
    time_zone: str = "UTC"
    concurrency_policy: str = "Allow"
    suspended: bool = False
    last_fire_at: float | None = None
    next_fire_at: float | None = None
    running: tuple[str, ...] = ()
    last_run: Fire | None = None
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def rule(self) -> str:
        """The cron expression or the ISO interval, as written."""
        return self.cron or self.interval or "-"

    @property
    def spec(self) -> Mapping[str, Any] | None:
        """The whole spec as data (only in answers to ``get``)."""
        spec = self.data.get("spec")
        return spec if isinstance(spec, Mapping) else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        last = data.get("last_run")
        return cls(id=str(data.get("id") or ""), cron=_text(data.get("cron")), interval=_text(data.get("interval")),
                   time_zone=str(data.get("time_zone") or "UTC"),
                   concurrency_policy=str(data.get("concurrency_policy") or "Allow"),
                   suspended=bool(data.get("suspended")), last_fire_at=_float(data.get("last_fire_at")),
                   next_fire_at=_float(data.get("next_fire_at")),
                   running=tuple(str(k) for k in data.get("running") or ()),
                   last_run=Fire.from_dict(last) if isinstance(last, Mapping) else None, data=dict(data))


@dataclass(frozen=True)
class NextFire:
    """One coming fire: ``at`` Unix seconds, ``utc`` ISO with Z, ``local`` ISO with the offset
    in the schedule's zone (the two 02:30s of a fall-back read differently), ``key`` its job id."""

    at: float
    utc: str
    local: str
    key: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NextFire:
        return cls(at=_float(data.get("at")) or 0.0, utc=str(data.get("utc") or ""), local=str(data.get("local") or ""),
                   key=str(data.get("key") or ""))
