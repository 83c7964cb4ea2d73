"""An incremental weighted-DRF sorter: clients ordered by weighted dominant share.

A client's dominant share is the largest of its shares of each resource (``cpus``, ``mem``,
``disk``, ``gpus``) of the pool's total; weighted DRF divides it by the client's weight, so a
client of weight 2 is held at twice the share of a client of weight 1 (Ghodsi et al., NSDI'11).

Why incremental: an allocation cycle hands out thousands of offers and every one changes one
client's share. Re-sorting everything after each (or at the start of every cycle) is what made
Mesos's allocator slow at 10,000 agents x 1,000 frameworks. Here the order is a sorted list kept
up to date in place: an allocation moves one client (bisect out, bisect in: O(log n) compares
plus a memmove). A change of the pool's totals changes every share, so it only marks the order
dirty; the next read re-sorts once.

Ties break by fewer allocations, then by registration order, so equal clients take turns and
the order is deterministic. A weighted share is one correctly rounded division of integers
(``held * q / (total * p)`` for a weight of exactly ``p / q``), so shares that are equal are
equal floats and tie, whatever their weights: dividing a rounded share by the weight would make
7/20 at weight 3.5 (0.09999999999999999) come before 2/20 at weight 1 (0.1). Pure: no I/O, no
clock.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field

DRF_RESOURCES = ("cpus", "mem", "disk", "gpus")

SortKey = tuple[float, int, int, str]


@dataclass
class _Client:
    name: str
    seq: int
    weight: float = 1.0
    active: bool = True
    ratio: tuple[int, int] = (1, 1)  # the weight as an exact fraction p / q
    allocated: dict[str, int] = field(default_factory=dict)  # resource name → thousandths
    count: int = 0  # allocations made, for fair tie-breaking
    key: SortKey | None = None  # its key in the order, when in it


class DRFSorter:
    """Orders clients (roles or frameworks) by weighted dominant share, lowest first."""

    _seq = itertools.count()

    def __init__(self) -> None:
        self._clients: dict[str, _Client] = {}
        self._order: list[SortKey] = []
        self._totals: dict[str, int] = {}
        self._dirty = False

    # --- membership -----------------------------------------------------------------------

    def add(self, name: str, weight: float = 1.0) -> None:
        if name in self._clients:
            return
        client = _Client(name, next(self._seq), weight, ratio=weight.as_integer_ratio())
        self._clients[name] = client
        self._insert(client)

    def remove(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None:
            self._take_out(client)

    def __contains__(self, name: str) -> bool:
        return name in self._clients

    def __len__(self) -> int:
        return len(self._clients)

    def names(self) -> list[str]:
        return list(self._clients)

    def activate(self, name: str) -> None:
        client = self._clients[name]
        if not client.active:
            client.active = True
            self._insert(client)

    def deactivate(self, name: str) -> None:
        client = self._clients[name]
        if client.active:
            self._take_out(client)
            client.active = False

    def set_weight(self, name: str, weight: float) -> None:
        client = self._clients[name]
        self._take_out(client)
        client.weight = weight
        client.ratio = weight.as_integer_ratio()
        self._insert(client)

    # --- accounting -----------------------------------------------------------------------

    def set_totals(self, totals: dict[str, int]) -> None:
        """The pool changed (an agent joined or left): every share changes; re-sort lazily."""
        self._totals = {name: totals.get(name, 0) for name in DRF_RESOURCES}
        self._dirty = True

    def allocated(self, name: str, amounts: dict[str, int], count: bool = True) -> None:
        """``name`` now holds ``amounts`` more (thousandths, may be negative on recovery)."""
        client = self._clients.get(name)
        if client is None:
            return
        self._take_out(client)
        held = client.allocated
        for resource, amount in amounts.items():
            held[resource] = held.get(resource, 0) + amount
        if count:
            client.count += 1
        self._insert(client)

    def allocation(self, name: str) -> dict[str, int]:
        return self._clients[name].allocated

    def share(self, name: str) -> float:
        """The unweighted dominant share."""
        return self._dominant(self._clients[name].allocated)

    # --- order ----------------------------------------------------------------------------

    def order(self) -> list[SortKey]:
        """Active clients, lowest weighted share first. The list is live: read it, do not keep it
        across allocations (use ``names_in_order`` for a snapshot)."""
        if self._dirty:
            self._resort()
        return self._order

    def names_in_order(self) -> list[str]:
        return [key[3] for key in self.order()]

    def _dominant(self, held: dict[str, int]) -> float:
        share = 0.0
        for resource, total in self._totals.items():
            if total > 0:
                value = held.get(resource, 0) / total
                if value > share:
                    share = value
        return share

    def _weighted(self, held: dict[str, int], ratio: tuple[int, int]) -> float:
        """The dominant share divided by the weight ``p / q``, each candidate one division of
        integers: correctly rounded, so exact ties stay ties and the order is never reversed."""
        p, q = ratio
        share = 0.0
        for resource, total in self._totals.items():
            if total > 0:
                value = held.get(resource, 0) * q / (total * p)
                if value > share:
                    share = value
        return share

    def _key(self, client: _Client) -> SortKey:
        if client.ratio == (1, 1):
            return (self._dominant(client.allocated), client.count, client.seq, client.name)
        return (self._weighted(client.allocated, client.ratio), client.count, client.seq, client.name)

    def _insert(self, client: _Client) -> None:
        if not client.active:
            return
        if self._dirty:
            client.key = None  # the re-sort will place it
            return
        client.key = self._key(client)
        bisect.insort(self._order, client.key)

    def _take_out(self, client: _Client) -> None:
        if self._dirty or client.key is None or not client.active:
            return
        index = bisect.bisect_left(self._order, client.key)
        if index < len(self._order) and self._order[index] == client.key:
            del self._order[index]
        client.key = None

    def _resort(self) -> None:
        self._dirty = False
        keys = []
        for client in self._clients.values():
            if client.active:
                client.key = self._key(client)
                keys.append(client.key)
            else:
                client.key = None
        keys.sort()
        self._order = keys
