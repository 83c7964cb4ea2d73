"""The batch queue's bookkeeping: a stage's pending and running tasks, a request's pending
indices, a queue's users and limit, and one ``assign`` round's decisions.

Why these shapes: identical pending tasks (one stage's request) are one ``Group`` holding a heap
of indices, so a 100,000-task array is one object, not 100,000, and the lowest index goes first;
a queue keeps each user's groups sorted in the order the user is served (job priority, then
submission, then stage), and counts the groups waiting with each shape so a round can stop as
soon as no shape of the queue fits what is left. Mutable on purpose and private to
``queues.py``, which owns them. Pure.
"""

from __future__ import annotations

from tepui.frameworks.batch.offer_fit import Fit, OfferRound
from tepui.frameworks.batch.queue_values import OfferView, QueueConfig, Reason, TaskRequest

Order = tuple[int, int, str, str, float, int]
NO_LIMIT = 1 << 62


class Stage:
    __slots__ = ("pending", "running", "groups")

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.running = 0
        self.groups: dict[TaskRequest, Group] = {}


class Group:
    """The pending tasks of one request: a heap of indices."""

    __slots__ = ("request", "heap", "stage", "fit", "order")

    def __init__(self, request: TaskRequest, stage: Stage, seq: int) -> None:
        self.request = request
        self.heap: list[int] = []
        self.stage = stage
        self.fit = Fit.of(request.resources, request.constraints, request.ports)
        self.order: Order = (-request.priority, request.submitted, request.job_id, request.stage,
                             request.not_before, seq)


class QueueState:
    __slots__ = ("config", "running", "pending", "users", "fits")

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self.running = 0
        self.pending = 0
        self.users: dict[str, list[tuple[Order, Group]]] = {}  # sorted by group order
        self.fits: dict[Fit, int] = {}  # how many groups wait with each (shape, rules)

    def budget(self) -> int:
        limit = self.config.max_running
        return NO_LIMIT if limit is None else limit - self.running


class Round(OfferRound):
    """One ``assign``: the offers, and what the queues decided about their groups."""

    def __init__(self, offers: list[OfferView], now: float) -> None:
        super().__init__(offers)
        self.now = now
        self.reasons: dict[Group, tuple[Reason, str]] = {}
        self.gangs_tried: set[str] = set()
        self.full: set[str] = set()  # queues whose limit was reached
        self.emptied: list[Group] = []  # groups placed whole: dropped after the round
        self.touched: list[Group] = []  # groups that placed tasks
