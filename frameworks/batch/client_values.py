"""What :mod:`tepui.frameworks.batch.client` gives back: typed views of the batch API's JSON
(``Job``, ``Stage``, ``Attempt``), the one error class, and the time filters' parser.

Why typed views and not the raw dicts: a data scientist in a notebook writes ``job.state`` and
``job.stages[0].succeeded`` and gets completion and a clear ``AttributeError``, not a
``KeyError`` three cells later. Each view keeps the answer it was read from in ``data`` (fields
added to the API later are still there) and is lenient about a missing key: an older framework
is not a crash. Pure: no I/O, so the CLI's renderers and tests use it freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

__all__ = ["ENDED", "EXIT_CODES", "EXIT_UNREACHABLE", "Attempt", "BatchError", "Dependency", "Job", "JobList",
           "Stage", "TaskCounts", "TimeError", "parse_time"]

#: Job states after which nothing runs again (except by ``retry``).
ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "DEADLINE_EXCEEDED"})
#: ``tepui jobs submit --wait``'s exit code per final state (issue 17's contract), and when the
#: API cannot be reached: a script (``bench/vs_slurm.sh``) tells a failed job from a dead cluster.
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "CANCELLED": 2, "DEADLINE_EXCEEDED": 3}
EXIT_UNREACHABLE = 4

#: Reasons that mean "the batch API is not there" rather than "it said no": the master's proxy
#: errors (master/http/framework_proxy.py) and no answer at all. ``wait`` rides these out for a
#: while (a framework restarting mid-job), the CLI exits 4 on them.
UNREACHABLE_REASONS = frozenset({"UNREACHABLE", "UNKNOWN_FRAMEWORK", "FRAMEWORK_UNREACHABLE", "FRAMEWORK_TIMEOUT",
                                 "FRAMEWORK_NO_API", "RELAY_LIMIT"})


class BatchError(Exception):
    """Any failure of a batch API call. ``status`` is the HTTP status (None: no answer came),
    ``reason`` the API's machine-readable reason (``INVALID_SPEC``, ``UNKNOWN_JOB``...,
    ``UNREACHABLE`` when nothing answered, ``WAIT_TIMEOUT`` for :meth:`BatchClient.wait`),
    ``message`` its sentence, ``field`` the spec field at fault, ``hint`` what to do next, ``job``
    the job's last known state when there is one (a wait that timed out). ``str()`` is all of it
    in one paragraph, so a notebook's traceback already says what to do."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 field: str | None = None, hint: str | None = None, job: Job | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.reason, self.field, self.hint, self.job = \
            message, status, reason, field, hint, job

    @property
    def unreachable(self) -> bool:
        """The API could not be reached (or the framework is not running), as opposed to refusing."""
        return self.reason in UNREACHABLE_REASONS or (self.reason is None and self.status in (502, 503, 504))

    def __str__(self) -> str:
        text = self.message
        if self.field:
            text += f" (field: {self.field})"
        if self.hint:
            text += f" {self.hint}"
        return text


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _str(value: Any, default: str = "") -> str:
    return default if value is None else str(value)


@dataclass(frozen=True)
class Dependency:
    stage: str
    condition: str = "all_succeeded"


@dataclass(frozen=True)
class Stage:
    """One stage of a job, with its indices counted by state (docs/batch.md "States")."""

    name: str
    state: str
    array: int
    pending: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    reason: str = ""
    depends_on: tuple[Dependency, ...] = ()

    @property
    def done(self) -> int:
        """Indices that will not run again (the progress bar's count)."""
        return self.succeeded + self.failed + self.skipped

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        deps = []
        for dep in data.get("depends_on") or []:
            if isinstance(dep, str):
                deps.append(Dependency(dep))
            elif isinstance(dep, Mapping):
                deps.append(Dependency(_str(dep.get("stage")), _str(dep.get("condition"), "all_succeeded")))
        return cls(name=_str(data.get("stage") or data.get("name")), state=_str(data.get("state"), "WAITING"),
                   array=_int(data.get("array"), 1), pending=_int(data.get("pending")),
                   queued=_int(data.get("queued")), running=_int(data.get("running")),
                   succeeded=_int(data.get("succeeded")), failed=_int(data.get("failed")),
                   skipped=_int(data.get("skipped")), reason=_str(data.get("reason")), depends_on=tuple(deps))


@dataclass(frozen=True)
class TaskCounts:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0

    @classmethod
    def from_dict(cls, data: Any) -> TaskCounts:
        data = data if isinstance(data, Mapping) else {}
        return cls(*(_int(data.get(name)) for name in ("total", "succeeded", "failed", "running", "pending")))


@dataclass(frozen=True)
class Job:
    """A job as the API answers it (docs/batch.md; JobRecord fields plus stages and counts)."""

    id: str
    name: str
    state: str
    user: str | None = None
    queue: str = "default"
    priority: int = 0
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    suspended: bool = False
    reason: str = ""
    stages: tuple[Stage, ...] = ()
    tasks: TaskCounts = TaskCounts()
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def exit_code(self) -> int | None:
        """0 SUCCEEDED, 1 FAILED, 2 CANCELLED, 3 DEADLINE_EXCEEDED; None while it is not ended."""
        return EXIT_CODES.get(self.state)

    @property
    def spec(self) -> Mapping[str, Any] | None:
        """The spec as data (only in answers to ``get`` and ``submit``)."""
        spec = self.data.get("spec")
        return spec if isinstance(spec, Mapping) else None

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"job {self.id} has no stage {name!r}; its stages: {', '.join(s.name for s in self.stages)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        user = data.get("user")
        return cls(id=_str(data.get("id")), name=_str(data.get("name")), state=_str(data.get("state"), "PENDING"),
                   user=None if user is None else str(user), queue=_str(data.get("queue"), "default"),
                   priority=_int(data.get("priority")), submitted_at=_float(data.get("submitted_at")),
                   started_at=_float(data.get("started_at")), finished_at=_float(data.get("finished_at")),
                   suspended=bool(data.get("suspended")), reason=_str(data.get("reason")),
                   stages=tuple(Stage.from_dict(s) for s in data.get("stages") or [] if isinstance(s, Mapping)),
                   tasks=TaskCounts.from_dict(data.get("tasks")), data=dict(data))


class JobList(list[Job]):
    """``list()``'s answer: the jobs of one page, newest submission first, and ``total``, how many
    match the filters in all."""

    def __init__(self, jobs: list[Job], total: int) -> None:
        super().__init__(jobs)
        self.total = total


@dataclass(frozen=True)
class Attempt:
    """One try of one task index (AttemptRecord fields, plus ``hostname`` when known and, in the
    history, the job's ``user``, ``queue`` and ``job_name``)."""

    job: str
    stage: str
    index: int
    attempt: int
    task_id: str
    state: str
    agent_id: str | None = None
    hostname: str | None = None
    queued_at: float | None = None
    launched_at: float | None = None
    running_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    task_state: str | None = None
    task_reason: str | None = None
    failure: str | None = None
    killed_by: str | None = None
    outcome: str = ""
    spent: bool = False
    retry_at: float | None = None
    user: str | None = None
    queue: str | None = None
    job_name: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def started(self) -> float | None:
        """When it started running (sacct's Start): RUNNING, else its launch."""
        return self.running_at if self.running_at is not None else self.launched_at

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        def text(name: str) -> str | None:
            value = data.get(name)
            return None if value is None else str(value)

        exit_code = data.get("exit_code")
        return cls(job=_str(data.get("job")), stage=_str(data.get("stage")), index=_int(data.get("index")),
                   attempt=_int(data.get("attempt"), 1), task_id=_str(data.get("task_id")),
                   state=_str(data.get("state"), "LAUNCHED"), agent_id=text("agent_id"), hostname=text("hostname"),
                   queued_at=_float(data.get("queued_at")), launched_at=_float(data.get("launched_at")),
                   running_at=_float(data.get("running_at")), finished_at=_float(data.get("finished_at")),
                   exit_code=_int(exit_code) if isinstance(exit_code, int) else None,
                   task_state=text("task_state"), task_reason=text("task_reason"), failure=text("failure"),
                   killed_by=text("killed_by"), outcome=_str(data.get("outcome")), spent=bool(data.get("spent")),
                   retry_at=_float(data.get("retry_at")), user=text("user"), queue=text("queue"),
                   job_name=text("job_name"), data=dict(data))


class TimeError(ValueError):
    """A time filter that is neither a date nor a duration; the message shows both forms."""


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(value: float | int | datetime | str, now: float) -> float:
    """A time filter as Unix seconds: a number is Unix seconds, a ``datetime`` its instant (naive:
    local time, as ``date`` prints it), a string an ISO 8601 date or datetime (``2026-12-07``,
    ``2026-12-07T14:00``, ``...Z`` or ``+01:00``) or a duration back from ``now``: ``90s``,
    ``15m``, ``1h``, ``2d``, ``1w``, ``1h30m`` (Slurm's ``sacct -S now-1hour``, ``kubectl
    --since=1h``) or ISO 8601's ``PT1H``/``P2D``."""
    if isinstance(value, bool):
        raise TimeError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    text = str(value).strip()
    lowered = text.lower()
    if lowered and _RELATIVE.sub("", lowered) == "":
        return now - sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _RELATIVE.findall(lowered))
    if text[:1] in ("P", "p"):
        from tepui.frameworks.batch.durations import DurationError, parse_duration

        try:
            return now - parse_duration(text)
        except DurationError as exc:
            raise TimeError(f"{text!r}: {exc}") from None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        pass
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        raise TimeError(f"{text!r} is a bare number: write a duration with its unit ({text}s, {text}m, {text}h, "
                        f"{text}d) or an ISO 8601 date such as 2026-12-07T14:00")
    raise TimeError(f"{text!r} is not a time: write an ISO 8601 date or datetime (2026-12-07, 2026-12-07T14:00, "
                    "2026-12-07T14:00Z) or a duration back from now (30m, 1h, 2d, 1w, 1h30m)")
