"""The batch framework's own small weighted DRF: what each submitter's running tasks hold, and
the order in which submitters are served.

Why its own and not the master's ``tepui.offers.sorter``: a framework imports only ``tepui.sdk``
and its own package (tests/frameworks/test_sdk_only.py) — it is built as any third-party
framework would be, which is what proves the SDK is enough. It is also a different problem: the
master's sorter keeps an order across many allocation cycles; here the order lives for one
``assign`` (a heap of the users who wait), so it only needs each user's holdings and key.

A user's dominant share is the largest of its shares of ``cpus``, ``mem``, ``disk`` and ``gpus``
of the pool; weighted DRF divides it by the user's weight (Ghodsi et al., NSDI'11). As in the
master's sorter, a weighted share is one correctly rounded division of integers
(``held * q / (total * p)`` for a weight of exactly ``p / q``), so equal shares tie exactly
whatever the weights. Ties break by fewer running tasks, then the earlier submission, then the
name, so the order is deterministic. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tepui.sdk.resources import Resources

DRF_RESOURCES = ("cpus", "mem", "disk", "gpus")

UserKey = tuple[float, int, int, str]


@dataclass
class UserShare:
    name: str
    ratio: tuple[int, int]  # the weight as an exact fraction p / q
    held: dict[str, int] = field(default_factory=dict)  # resource name → thousandths
    running: int = 0


class FairShare:
    """Every submitter's holdings, and its weighted dominant share of a pool."""

    def __init__(self) -> None:
        self.users: dict[str, UserShare] = {}
        self._totals: tuple[tuple[str, int], ...] = ()

    def user(self, name: str, weight: float) -> UserShare:
        user = self.users.get(name)
        if user is None:
            user = self.users[name] = UserShare(name, weight.as_integer_ratio())
        return user

    def set_pool(self, totals: dict[str, int]) -> None:
        """The pool shares are measured against (thousandths by resource name)."""
        self._totals = tuple((name, totals[name]) for name in DRF_RESOURCES if totals.get(name, 0) > 0)

    def held_total(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for user in self.users.values():
            for name, amount in user.held.items():
                out[name] = out.get(name, 0) + amount
        return out

    def take(self, user: UserShare, resources: Resources, count: int = 1) -> None:
        held = user.held
        for name, amount in resources.fixed_totals().items():
            held[name] = held.get(name, 0) + amount * count
        user.running += count

    def give_back(self, user: UserShare, resources: Resources) -> None:
        held = user.held
        for name, amount in resources.fixed_totals().items():
            left = held.get(name, 0) - amount
            if left > 0:
                held[name] = left
            else:
                held.pop(name, None)
        user.running -= 1

    def share(self, user: UserShare) -> float:
        """The weighted dominant share."""
        p, q = user.ratio
        held = user.held
        share = 0.0
        for name, total in self._totals:
            value = held.get(name, 0) * q / (total * p)
            if value > share:
                share = value
        return share

    def key(self, user: UserShare, submitted: int) -> UserKey:
        return (self.share(user), user.running, submitted, user.name)
