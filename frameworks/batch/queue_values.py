"""The values the batch queue takes and gives: queue configuration, task requests, offers, and
the placement it returns.

Why plain values of their own: the queue (``queues.py``) must not depend on the job spec, which
changes as the spec grows; the framework's core turns a validated spec into these requests and an
SDK ``Offer`` into an :class:`OfferView`, and the queue never sees either. Frozen, so a request
shared by the 10,000 tasks of one array is one object (a :class:`PendingTask` is a request and an
index), and values handed back can be kept without copying.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from tepui.sdk.protocol.values import Offer
from tepui.sdk.resources import Resources

__all__ = [
    "AttributeRule", "Assignment", "Launch", "OfferView", "PendingTask", "QueueConfig", "QueueConfigError",
    "QueuesConfig", "Reason", "TaskRef", "TaskRequest", "Waiting",
]


class QueueConfigError(ValueError):
    """A queue configuration that cannot be used; the message names the field."""


@dataclass(frozen=True)
class QueueConfig:
    """A named queue (AWS Batch job queue): higher ``priority`` is served first; at most
    ``max_running`` of its tasks run at once (None: no limit)."""

    name: str
    priority: int = 0
    max_running: int | None = None


@dataclass(frozen=True)
class QueuesConfig:
    """Every queue, and the submitters' weights for fair share (weight 2 is held at twice the
    share of weight 1; users not listed weigh ``default_weight``)."""

    queues: tuple[QueueConfig, ...] = (QueueConfig("default"),)
    weights: tuple[tuple[str, float], ...] = ()
    default_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.queues:
            raise QueueConfigError("queues: at least one queue is needed")
        seen: set[str] = set()
        for i, queue in enumerate(self.queues):
            where = f"queues[{i}]"
            if not isinstance(queue.name, str) or not _NAME.match(queue.name):
                raise QueueConfigError(f"{where}.name: {queue.name!r} must be 1-64 of letters, digits, '.', '_', '-'")
            if queue.name in seen:
                raise QueueConfigError(f"{where}.name: queue {queue.name!r} is defined twice")
            seen.add(queue.name)
            if not isinstance(queue.priority, int) or isinstance(queue.priority, bool):
                raise QueueConfigError(f"{where}.priority: must be an integer, got {queue.priority!r}")
            if queue.max_running is not None and (not isinstance(queue.max_running, int)
                                                  or isinstance(queue.max_running, bool) or queue.max_running < 0):
                raise QueueConfigError(f"{where}.max_running: must be an integer >= 0, got {queue.max_running!r}")
        for user, weight in self.weights:
            _check_weight(f"weights.{user}", weight)
        _check_weight("default_weight", self.default_weight)

    def weight(self, user: str) -> float:
        return dict(self.weights).get(user, self.default_weight)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueuesConfig:
        """``{"queues": [{"name": "prod", "priority": 10, "max_running": 500}], "weights": {"ana": 2}}``."""
        if not isinstance(data, Mapping):
            raise QueueConfigError("queues config: must be a mapping")
        unknown = set(data) - {"queues", "weights", "default_weight"}
        if unknown:
            raise QueueConfigError(f"{sorted(unknown)[0]}: unknown field (known: queues, weights, default_weight)")
        queues = []
        for i, item in enumerate(data.get("queues", [{"name": "default"}])):
            if not isinstance(item, Mapping):
                raise QueueConfigError(f"queues[{i}]: must be a mapping with name, priority, max_running")
            extra = set(item) - {"name", "priority", "max_running"}
            if extra:
                raise QueueConfigError(f"queues[{i}].{sorted(extra)[0]}: unknown field")
            if "name" not in item:
                raise QueueConfigError(f"queues[{i}].name: required")
            queues.append(QueueConfig(item["name"], item.get("priority", 0), item.get("max_running")))
        weights = data.get("weights", {})
        if not isinstance(weights, Mapping):
            raise QueueConfigError("weights: must be a mapping of user to weight")
        return cls(tuple(queues), tuple(sorted(weights.items())), data.get("default_weight", 1.0))


_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _check_weight(where: str, weight: object) -> None:
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight < float("inf"):
        raise QueueConfigError(f"{where}: must be a number > 0, got {weight!r}")


@dataclass(frozen=True)
class AttributeRule:
    """A placement rule on an offer's hostname (``field`` ``hostname``) or attribute: ``IS``
    (equals ``value``), ``LIKE`` / ``UNLIKE`` (full regex match). Only rules that judge one offer
    alone: the queue places many tasks per call, and a rule that depends on where the others went
    (Marathon's UNIQUE, MAX_PER) is the core's to express as separate gangs or stages. An offer
    without the attribute fails every rule but ``UNLIKE`` (as Marathon)."""

    field: str
    operator: str
    value: str

    def __post_init__(self) -> None:
        if self.operator not in ("IS", "LIKE", "UNLIKE"):
            raise ValueError(f"constraints: operator {self.operator!r} must be IS, LIKE or UNLIKE")
        if self.operator != "IS":
            try:
                re.compile(self.value)
            except re.error as e:
                raise ValueError(f"constraints: {self.value!r} is not a regex: {e}") from None

    def refuses(self, offer: OfferView) -> str | None:
        """None when the offer passes, else why not (a sentence for ``tepui jobs why``)."""
        have = offer.hostname if self.field in ("hostname", "@hostname") else offer.attributes.get(self.field)
        if have is None:
            return None if self.operator == "UNLIKE" else f"no attribute {self.field!r} ({self})"
        if self.operator == "IS":
            ok = have == self.value
        else:
            ok = (re.fullmatch(self.value, have) is not None) == (self.operator == "LIKE")
        return None if ok else f"{self.field}={have} fails {self}"

    def __str__(self) -> str:
        return f"{self.field} {self.operator} {self.value}"


@dataclass(frozen=True)
class TaskRequest:
    """What every pending task of one stage of one job asks for; a task is this plus its index.

    ``submitted`` is the job's submission order (a sequence number the core assigns, FIFO within
    a user). ``gang``: tasks sharing this key launch together or not at all, ``gang_size`` of
    them. ``parallelism``: at most this many of the stage's tasks run at once (None: no cap).
    ``not_before``: a retry waiting for its backoff (a retried index is its own request).
    ``ports``: how many host ports each task takes from its offer (the spec's ``resources.ports``
    count; the core picks which from the offer's ranges)."""

    job_id: str
    stage: str
    user: str
    queue: str
    resources: Resources
    priority: int = 0
    submitted: int = 0
    gang: str | None = None
    gang_size: int = 0
    parallelism: int | None = None
    constraints: tuple[AttributeRule, ...] = ()
    not_before: float = 0.0
    ports: int = 0

    def __post_init__(self) -> None:
        if self.gang is not None and self.gang_size < 1:
            raise ValueError(f"gang_size: a gang needs gang_size >= 1, got {self.gang_size}")
        if self.parallelism is not None and self.parallelism < 1:
            raise ValueError(f"parallelism: must be >= 1 or None, got {self.parallelism}")
        if self.ports < 0:
            raise ValueError(f"ports: must be >= 0, got {self.ports}")


class TaskRef(NamedTuple):
    """A task's identity: no two tasks with the same ref are ever pending or running at once."""

    job_id: str
    stage: str
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the domain's word, and a tuple hashes in C


class PendingTask(NamedTuple):
    request: TaskRequest
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose, as TaskRef

    @property
    def ref(self) -> TaskRef:
        return TaskRef(self.request.job_id, self.request.stage, self.index)


@dataclass(frozen=True)
class OfferView:
    """What the queue reads of an offer (built from the SDK's ``Offer`` with :meth:`of`)."""

    offer_id: str
    agent_id: str
    resources: Resources
    hostname: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, offer: Offer) -> OfferView:
        return cls(offer.id, offer.agent_id, Resources.from_wire(offer.resources), offer.hostname,
                   dict(offer.attributes))


class Reason(str, enum.Enum):
    """Why a pending task was not placed by one ``assign``."""

    QUEUE_LIMIT = "queue limit reached"
    PARALLELISM = "stage parallelism reached"
    SUSPENDED = "job suspended"
    BACKOFF = "waiting for its retry backoff"
    NO_FIT = "no offer fits its shape"
    GANG_INCOMPLETE = "gang cannot be placed whole"
    OUTRANKED = "lower in fairness order"


@dataclass(frozen=True)
class Launch:
    """Tasks to launch on one offer; each uses its request's resources."""

    offer_id: str
    agent_id: str
    tasks: tuple[PendingTask, ...]


@dataclass(frozen=True)
class Waiting:
    """``count`` tasks of one request left pending, and why."""

    job_id: str
    stage: str
    count: int
    reason: Reason
    detail: str = ""


@dataclass(frozen=True)
class Assignment:
    """One ``assign``: launches by offer (offer order), offers left unused, the requests it
    looked at and left waiting with their reasons, and the tasks it never reached by queue
    (``queue``, ``QUEUE_LIMIT`` or ``OUTRANKED``, how many); ``BatchQueues.reasons(job)`` gives
    any job's exact reasons."""

    launches: tuple[Launch, ...]
    unused: tuple[str, ...]
    waiting: tuple[Waiting, ...]
    behind: tuple[tuple[str, Reason, int], ...] = ()

    @property
    def placed(self) -> int:
        return sum(len(launch.tasks) for launch in self.launches)
