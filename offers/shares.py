"""The DRF order of a cycle: roles in hierarchical weighted DRF order, and within each role its
frameworks in DRF order.

``Shares`` owns the ``RoleTree`` (roles, weights, subtree shares) and one ``DRFSorter`` per
role holding that role's frameworks, and keeps both told of the pool's totals (every agent's
scalars) and of every allocation. ``Frameworks`` joins and leaves roles through it; ``Holdings`` reports every charge
and credit to it; the cycle reads the orders. Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Iterable

from tepui.offers.roles import RoleTree
from tepui.offers.sorter import DRFSorter


class Shares:
    """Weighted dominant shares of roles and of the frameworks of each role."""

    def __init__(self) -> None:
        self.roles = RoleTree()
        # role → its frameworks' sorter. Read by the cycle (``sorters.get(role).order()``) for
        # each role of each agent it visits; only ``Shares`` changes it.
        self.sorters: dict[str, DRFSorter] = {}
        self._totals: dict[str, int] = {}

    def add_to_pool(self, amounts: dict[str, int], sign: int) -> None:
        """An agent joined (+1), left (-1) or changed: every share changes (the sorters re-sort
        lazily)."""
        totals = self._totals
        for name, amount in amounts.items():
            totals[name] = totals.get(name, 0) + sign * amount
        self.roles.set_totals(totals)
        for sorter in self.sorters.values():
            sorter.set_totals(totals)

    def join(self, framework_id: str, role: str, active: bool) -> None:
        self.roles.track(role)
        sorter = self.sorters.get(role)
        if sorter is None:
            sorter = self.sorters[role] = DRFSorter()
            sorter.set_totals(self._totals)
        sorter.add(framework_id)
        if not active:
            sorter.deactivate(framework_id)

    def leave(self, framework_id: str, role: str) -> None:
        """The framework's resources in the role were recovered first."""
        sorter = self.sorters[role]
        sorter.remove(framework_id)
        if not len(sorter):
            del self.sorters[role]
        self.roles.untrack(role)

    def activate(self, framework_id: str, roles: Iterable[str]) -> None:
        for role in roles:
            self.sorters[role].activate(framework_id)

    def deactivate(self, framework_id: str, roles: Iterable[str]) -> None:
        for role in roles:
            self.sorters[role].deactivate(framework_id)

    def allocated(self, framework_id: str, role: str, amounts: dict[str, int], count: bool) -> None:
        """The framework holds ``amounts`` more in ``role`` (negative on recovery); ``count``
        says whether it was an allocation (ties break by fewer allocations)."""
        sorter = self.sorters.get(role)
        if sorter is not None:
            sorter.allocated(framework_id, amounts, count=count)
        self.roles.allocated(role, amounts, count=count)

    def share(self, framework_id: str, roles: Iterable[str]) -> float:
        """The framework's largest unweighted dominant share among ``roles``."""
        return max(self.sorters[role].share(framework_id) for role in roles)
