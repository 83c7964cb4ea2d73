"""Roles: hierarchical names, weights, quotas, and the order in which roles are served.

A role is a path (``eng``, ``eng/backend``); ``*`` is the default role. Hierarchical DRF (Mesos
semantics): at every level of the tree, sibling roles are sorted by the weighted dominant share
of everything allocated in their subtree; a role that has frameworks of its own *and* child
roles competes with its children through a virtual leaf (``eng/.``). The flattened, depth-first
order of that tree is the order in which roles are offered an agent.

Quota (per role, scalars only): a **guarantee** is held back for the role even while it is idle
(the allocator keeps enough unreserved resources free — the headroom — and serves roles below
their guarantee first); a **limit** is never exceeded (offers are cut down to fit). Both count
the role's whole subtree, as Mesos does, and consumption counts allocations (offers and tasks)
plus reservations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tepui.offers.sorter import DRFSorter

DEFAULT_ROLE = "*"
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_SELF = "."


class InvalidRole(ValueError):
    """A role name that Tepui (like Mesos) refuses."""


def validate_role(role: str) -> str:
    """Mesos rules: ``*`` alone, or '/'-separated segments that are not empty, ``.`` or ``..``,
    do not start with ``-``, and hold no whitespace or control characters."""
    if role == DEFAULT_ROLE:
        return role
    if not role or len(role) > 255:
        raise InvalidRole(f"role {role!r} must be 1-255 characters")
    for segment in role.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise InvalidRole(
                f"role {role!r} is invalid: each '/'-separated part must be non-empty, not '.' or '..', "
                "and use letters, digits, '_', '-' or '.' (not starting with '-')"
            )
    return role


def ancestors(role: str) -> list[str]:
    """``eng/backend/api`` → ``["eng/backend", "eng"]`` (nearest first)."""
    if role == DEFAULT_ROLE:
        return []
    parts = role.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def lineage(role: str) -> list[str]:
    """The role itself and its ancestors, nearest first."""
    return [role, *ancestors(role)]


def is_within(role: str, scope: str) -> bool:
    """Whether ``role`` is ``scope`` or one of its descendants."""
    return role == scope or role.startswith(scope + "/")


@dataclass(frozen=True)
class Quota:
    """Scalars in thousandths. An empty guarantee or limit means none."""

    guarantee: dict[str, int] = field(default_factory=dict)
    limit: dict[str, int] = field(default_factory=dict)


@dataclass
class _Node:
    path: str  # "" is the root
    sorter: DRFSorter = field(default_factory=DRFSorter)  # child subtrees (and ".") by share
    children: set[str] = field(default_factory=set)  # child role paths
    frameworks: int = 0  # frameworks subscribed to exactly this role


def _parent(role: str) -> str:
    return role.rsplit("/", 1)[0] if "/" in role else ""


class RoleTree:
    """The hierarchy of roles that have frameworks, with weights and subtree shares.

    Every node sits in its parent's sorter under its path, with the allocation of its whole
    subtree. A node with both frameworks and children also holds ``"."`` in its own sorter,
    with the allocation of its own frameworks only.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {"": _Node("")}
        self._weights: dict[str, float] = {}
        self._totals: dict[str, int] = {}
        self._own: dict[str, dict[str, int]] = {}  # role → allocated to its own frameworks
        self._order: list[str] | None = None

    # --- membership -----------------------------------------------------------------------

    def track(self, role: str) -> None:
        """One more framework subscribed to ``role``."""
        self._ensure(role)
        node = self._nodes[role]
        node.frameworks += 1
        if node.frameworks == 1 and node.children:
            self._add_self(role)
        self._order = None

    def untrack(self, role: str) -> None:
        """One framework fewer in ``role`` (its allocations were recovered first)."""
        node = self._nodes.get(role)
        if node is None or node.frameworks == 0:
            return
        node.frameworks -= 1
        if node.frameworks == 0:
            node.sorter.remove(_SELF)
            self._prune(role)
        self._order = None

    def roles(self) -> list[str]:
        return [path for path, node in self._nodes.items() if node.frameworks]

    def _ensure(self, role: str) -> None:
        if role in self._nodes:
            return
        parent = _parent(role)
        self._ensure(parent) if parent else None
        node = _Node(role)
        node.sorter.set_totals(self._totals)
        self._nodes[role] = node
        parent_node = self._nodes[parent]
        parent_node.children.add(role)
        parent_node.sorter.add(role, self._weights.get(role, 1.0))
        if parent and parent_node.frameworks and len(parent_node.children) == 1:
            self._add_self(parent)

    def _add_self(self, role: str) -> None:
        sorter = self._nodes[role].sorter
        sorter.add(_SELF)
        own = self._own.get(role)
        if own:
            sorter.allocated(_SELF, own, count=False)

    def _prune(self, role: str) -> None:
        """Drops nodes with neither frameworks nor children, walking up."""
        while role:
            node = self._nodes[role]
            if node.frameworks or node.children:
                return
            parent = _parent(role)
            del self._nodes[role]
            parent_node = self._nodes[parent]
            parent_node.children.discard(role)
            parent_node.sorter.remove(role)
            if parent and not parent_node.children:
                parent_node.sorter.remove(_SELF)  # a leaf again: it competes in its parent
            role = parent

    # --- weights and shares ---------------------------------------------------------------

    def set_weight(self, role: str, weight: float) -> None:
        if not weight > 0:
            raise ValueError(f"weight of role {role!r} must be > 0, got {weight}")
        self._weights[role] = weight
        if role in self._nodes:
            self._nodes[_parent(role)].sorter.set_weight(role, weight)
        self._order = None

    def weight(self, role: str) -> float:
        return self._weights.get(role, 1.0)

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def set_totals(self, totals: dict[str, int]) -> None:
        self._totals = dict(totals)
        for node in self._nodes.values():
            node.sorter.set_totals(totals)
        self._order = None

    def allocated(self, role: str, amounts: dict[str, int], count: bool = True) -> None:
        """``role``'s own frameworks now hold ``amounts`` more (negative to recover)."""
        own = self._own.setdefault(role, {})
        for name, amount in amounts.items():
            own[name] = own.get(name, 0) + amount
        node = self._nodes.get(role)
        if node is None:
            return
        if _SELF in node.sorter:
            node.sorter.allocated(_SELF, amounts, count)
        child = role
        while child:
            parent = _parent(child)
            self._nodes[parent].sorter.allocated(child, amounts, count)
            child = parent
        self._order = None

    def share(self, role: str) -> float:
        """Weighted dominant share of the role's subtree."""
        return self._nodes[_parent(role)].sorter.share(role) / self.weight(role)

    # --- order ----------------------------------------------------------------------------

    def order(self) -> list[str]:
        """Roles with frameworks, in hierarchical DRF order (cached until a share changes)."""
        if self._order is None:
            out: list[str] = []
            self._walk("", out)
            self._order = out
        return self._order

    def _walk(self, path: str, out: list[str]) -> None:
        for entry in self._nodes[path].sorter.names_in_order():
            if entry == _SELF:
                out.append(path)
            elif self._nodes[entry].children:
                self._walk(entry, out)
            else:
                out.append(entry)
