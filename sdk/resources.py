"""The resources algebra: exact, immutable, role-aware.

Scalars (``cpus``, ``mem`` MiB, ``disk`` MiB, ``gpus``, custom) are fixed-point thousandths, as
in Mesos, so that 10,000 additions and subtractions of 0.1 CPU land exactly where they started;
floats would drift and an agent would slowly "lose" capacity. Ranges (``ports``) are sets of
integers stored as disjoint, sorted, coalesced intervals. Sets are frozensets of strings.

Every amount is keyed by (name, role, reservation): ``cpus(eng):4`` is not interchangeable with
unreserved ``cpus:4``. Values are immutable; ``a + b`` and ``a - b`` return new values, and
``a - b`` refuses (``InsufficientResources``) when ``a`` does not contain ``b``, because in a
scheduler a negative amount is always a bookkeeping bug that must surface at once.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple, Union

from tepui.sdk.protocol.values import DiskInfo, Persistence, Range, Reservation, Resource, VolumeMount

SCALE = 1000  # fixed point: thousandths

Intervals = tuple[tuple[int, int], ...]
Amount = Union[int, Intervals, frozenset[str]]


class InsufficientResources(ValueError):
    """Raised by ``a - b`` when ``a`` does not contain ``b``."""


class InvalidResources(ValueError):
    """A resource description that cannot be parsed or is negative."""


class ResourceKey(NamedTuple):
    """What an amount is keyed by. A named tuple, not a dataclass: every algebra operation
    hashes and compares keys, and a tuple does that in C (a frozen dataclass's ``__hash__`` was
    6% of the master's time under launch load)."""

    name: str
    role: str = "*"
    reservation: str | None = None  # None | "STATIC" | "DYNAMIC"
    principal: str | None = None
    volume: str | None = None  # a persistent volume's id (disk only)
    volume_path: str | None = None  # where tasks mount it, relative to their sandbox
    volume_principal: str | None = None
    volume_mode: str | None = None  # RW | RO

    @property
    def reserved(self) -> bool:
        return self.role != "*"


def to_fixed(value: float) -> int:
    """Rounds a scalar to thousandths, halves away from zero (Mesos: ``llround(v * 1000)``)."""
    if not math.isfinite(value) or not math.isfinite(value * SCALE):  # 1e308 is finite, 1e308 * 1000 is not
        raise InvalidResources(f"scalar must be a finite number, got {value}")
    return int(math.copysign(math.floor(abs(value) * SCALE + 0.5), value))


def _check_scalar(name: str, value: float | None) -> float:
    if value is None or not math.isfinite(value) or value < 0:
        raise InvalidResources(f"resource {name!r} needs a finite scalar >= 0, got {value}")
    return value


def _sort_key(key: ResourceKey) -> tuple[str, str, str, str, str]:
    """Keys compare with None as "": a None/str mix in one position must not break sorting."""
    return (key.name, key.role, key.reservation or "", key.principal or "", key.volume or "")


def _normalize(intervals: Iterable[tuple[int, int]]) -> Intervals:
    out: list[list[int]] = []
    for begin, end in sorted(intervals):
        if begin > end:
            raise InvalidResources(f"range [{begin}-{end}] has begin > end")
        if out and begin <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return tuple((b, e) for b, e in out)


def _ranges_contain(outer: Intervals, inner: Intervals) -> bool:
    i = 0
    for begin, end in inner:
        while i < len(outer) and outer[i][1] < begin:
            i += 1
        if i == len(outer) or outer[i][0] > begin or outer[i][1] < end:
            return False
    return True


def _ranges_subtract(outer: Intervals, inner: Intervals) -> Intervals:
    result: list[tuple[int, int]] = []
    for begin, end in outer:
        pieces = [(begin, end)]
        for ib, ie in inner:
            next_pieces = []
            for pb, pe in pieces:
                if ie < pb or ib > pe:
                    next_pieces.append((pb, pe))
                    continue
                if pb < ib:
                    next_pieces.append((pb, ib - 1))
                if ie < pe:
                    next_pieces.append((ie + 1, pe))
            pieces = next_pieces
        result.extend(pieces)
    return _normalize(result)


def _ranges_size(intervals: Intervals) -> int:
    return sum(e - b + 1 for b, e in intervals)


def _format_amount(amount: Amount) -> str:
    if isinstance(amount, int):
        text = f"{amount / SCALE:.3f}".rstrip("0").rstrip(".")
        return text or "0"
    if isinstance(amount, tuple):
        return "[" + ", ".join(f"{b}-{e}" for b, e in amount) + "]"
    return "{" + ",".join(sorted(amount)) + "}"


class Resources:
    """An immutable bag of resources. Construct with :meth:`parse`, :meth:`of` or
    :meth:`from_wire`; combine with ``+`` and ``-``; test with :meth:`contains`."""

    __slots__ = ("_items", "_hash", "_totals", "_reserved", "_json")

    def __init__(self, items: Mapping[ResourceKey, Amount] | None = None) -> None:
        clean: dict[ResourceKey, Amount] = {}
        for key, amount in (items or {}).items():
            if isinstance(amount, int):
                if amount < 0:
                    raise InvalidResources(f"negative amount for {key.name}: {amount / SCALE}")
                if amount:
                    clean[key] = amount
            elif amount:
                clean[key] = amount
        self._items = clean
        self._hash: int | None = None
        self._totals: dict[str, int] | None = None
        self._reserved: bool | None = None
        self._json: dict[str, object] | None = None

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def of(cls, role: str = "*", **scalars: float) -> Resources:
        """``Resources.of(cpus=0.5, mem=128)``: unreserved (or ``role``) scalars."""
        items: dict[ResourceKey, Amount] = {}
        for name, value in scalars.items():
            _check_scalar(name, value)
            items[ResourceKey(name, role, "STATIC" if role != "*" else None)] = to_fixed(value)
        return cls(items)

    _ITEM = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(?:\(([^)]*)\))?\s*:\s*(.+?)\s*$")

    @classmethod
    def parse(cls, text: str, default_role: str = "*") -> Resources:
        """Parses the agent-flag syntax: ``cpus:4;mem:2048;ports:[31000-32000];cpus(eng):2``."""
        result = cls()
        for part in filter(None, (p.strip() for p in text.split(";"))):
            match = cls._ITEM.match(part)
            if not match:
                raise InvalidResources(
                    f"cannot parse resource {part!r}: expected NAME:VALUE or NAME(ROLE):VALUE"
                )
            name, role, value = match.group(1), match.group(2), match.group(3)
            if role is not None and not role.strip():
                raise InvalidResources(f"empty role in {part!r}: write NAME(ROLE):VALUE or NAME:VALUE")
            role = role.strip() if role else default_role
            key = ResourceKey(name, role, "STATIC" if role != "*" else None)
            amount: Amount
            if value.startswith("["):
                if not value.endswith("]"):
                    raise InvalidResources(f"range resource {part!r} must look like [1-10, 20-30]")
                spans = []
                for span in filter(None, (s.strip() for s in value[1:-1].split(","))):
                    try:
                        begin, _, end = span.partition("-")
                        spans.append((int(begin), int(end or begin)))
                    except ValueError:
                        raise InvalidResources(f"bad range {span!r} in {part!r}") from None
                try:
                    amount = _normalize(spans)
                except InvalidResources as exc:
                    raise InvalidResources(f"{exc} in {part!r}") from None
            elif value.startswith("{"):
                if not value.endswith("}"):
                    raise InvalidResources(f"set resource {part!r} must look like {{a,b}}")
                amount = frozenset(filter(None, (s.strip() for s in value[1:-1].split(","))))
            else:
                try:
                    number = float(value)
                except ValueError:
                    raise InvalidResources(f"bad scalar {value!r} for {name}") from None
                try:
                    amount = to_fixed(_check_scalar(name, number))
                except InvalidResources as exc:
                    raise InvalidResources(f"{exc} in {part!r}") from None
            result = result + cls({key: amount})
        return result

    @classmethod
    def from_wire(cls, resources: Iterable[Resource]) -> Resources:
        """The algebra's value of wire resources. Frameworks launch many tasks of one shape, so
        results are remembered by the (frozen, hashable) wire structs: values are immutable."""
        wire = tuple(resources)
        try:
            cached = _FROM_WIRE.get(wire)
        except TypeError:  # a list inside (ranges, sets): not hashable, not cached
            return cls._from_wire(wire)
        if cached is None:
            cached = cls._from_wire(wire)
            if len(_FROM_WIRE) >= _FROM_WIRE_LIMIT:
                _FROM_WIRE.clear()
            _FROM_WIRE[wire] = cached
        return cached

    @classmethod
    def _from_wire(cls, resources: Iterable[Resource]) -> Resources:
        result = cls()
        for res in resources:
            reservation = res.reservation
            persistence = res.disk.persistence if res.disk else None
            mount = res.disk.volume if res.disk else None
            if persistence is not None and (res.name != "disk" or res.role == "*"):
                raise InvalidResources(f"only reserved disk can be a persistent volume, not {res.name}({res.role})")
            key = ResourceKey(
                res.name,
                res.role,
                reservation.type if reservation else ("STATIC" if res.role != "*" else None),
                reservation.principal if reservation else None,
                persistence.id if persistence else None,
                mount.container_path if mount and persistence else None,
                persistence.principal if persistence else None,
                (mount.mode if mount else None) if persistence else None,
            )
            amount: Amount
            if res.type == "SCALAR":
                amount = to_fixed(_check_scalar(res.name, res.scalar))
            elif res.type == "RANGES":
                amount = _normalize((r.begin, r.end) for r in (res.ranges or []))
            elif res.type == "SET":
                amount = frozenset(res.set or [])
            else:
                raise InvalidResources(
                    f"resource {res.name!r} has unknown type {res.type!r} (SCALAR, RANGES or SET)"
                )
            result = result + cls({key: amount})
        return result

    def to_wire(self) -> list[Resource]:
        out = []
        for key, amount in sorted(self._items.items(), key=lambda kv: _sort_key(kv[0])):
            reservation = (
                Reservation(type=key.reservation, principal=key.principal) if key.reservation else None
            )
            disk = None
            if key.volume is not None:
                disk = DiskInfo(persistence=Persistence(id=key.volume, principal=key.volume_principal),
                                volume=VolumeMount(container_path=key.volume_path, mode=key.volume_mode or "RW")
                                if key.volume_path else None)
            if isinstance(amount, int):
                out.append(Resource(name=key.name, scalar=amount / SCALE, role=key.role, reservation=reservation,
                                    disk=disk))
            elif isinstance(amount, tuple):
                out.append(
                    Resource(
                        name=key.name,
                        type="RANGES",
                        ranges=[Range(begin=b, end=e) for b, e in amount],
                        role=key.role,
                        reservation=reservation,
                    )
                )
            else:
                out.append(Resource(name=key.name, type="SET", set=sorted(amount), role=key.role, reservation=reservation))
        return out

    # --- algebra --------------------------------------------------------------------------

    @classmethod
    def _trusted(cls, items: dict[ResourceKey, Amount]) -> Resources:
        """A value from items the algebra itself produced (positive, non-empty amounts): the
        validating constructor's loop is skipped on the hot path (``+``, ``-``)."""
        made = object.__new__(cls)
        made._items = items
        made._hash = None
        made._totals = None
        made._reserved = None
        made._json = None
        return made

    def __add__(self, other: Resources) -> Resources:
        if not other._items:
            return self
        if not self._items:
            return other
        items = dict(self._items)
        for key, amount in other._items.items():
            mine = items.get(key)
            if mine is None:
                items[key] = amount
            elif isinstance(mine, int) and isinstance(amount, int):
                items[key] = mine + amount
            elif isinstance(mine, tuple) and isinstance(amount, tuple):
                items[key] = _normalize(mine + amount)
            elif isinstance(mine, frozenset) and isinstance(amount, frozenset):
                items[key] = mine | amount
            else:
                raise InvalidResources(f"resource {key.name!r} is used with two different types")
        return Resources._trusted(items)

    def __sub__(self, other: Resources) -> Resources:
        if not other._items:
            return self
        if not self.contains(other):
            raise InsufficientResources(f"cannot subtract {other} from {self}: missing {other.missing_from(self)}")
        return self.subtract_contained(other)

    def subtract_contained(self, other: Resources) -> Resources:
        """``self - other`` for a caller that has just checked ``self.contains(other)`` (the
        master validating a launch, the allocator recovering what a framework holds): the same
        result without checking twice on the hot path. Unchecked: anything else is a bug."""
        if not other._items:
            return self
        items = dict(self._items)
        for key, amount in other._items.items():
            mine = items[key]
            left: Amount
            # ``amount`` is of ``mine``'s kind (a key's name fixes it): the ignores below say so
            # rather than check it again on this hot path
            if isinstance(mine, int):
                left = mine - amount  # type: ignore[operator]  # an int too: same key
            elif isinstance(mine, tuple):
                left = _ranges_subtract(mine, amount)  # type: ignore[arg-type]  # ranges too: same key
            else:
                left = mine - amount  # type: ignore[operator]  # a set too: same key
            if left:
                items[key] = left
            else:
                del items[key]
        return Resources._trusted(items)

    def contains(self, other: Resources) -> bool:
        for key, amount in other._items.items():
            mine = self._items.get(key)
            if mine is None:
                return False
            if isinstance(amount, int):
                if not isinstance(mine, int) or mine < amount:
                    return False
            elif isinstance(amount, tuple):
                if not isinstance(mine, tuple) or not _ranges_contain(mine, amount):
                    return False
            elif not isinstance(mine, frozenset) or not amount <= mine:
                return False
        return True

    def missing_from(self, other: Resources) -> Resources:
        """What ``other`` lacks to contain ``self`` (for error messages and explanations)."""
        items: dict[ResourceKey, Amount] = {}
        for key, amount in self._items.items():
            have = other._items.get(key)
            if have is None:
                items[key] = amount
            elif isinstance(amount, int) and isinstance(have, int):
                if amount > have:
                    items[key] = amount - have
            elif isinstance(amount, tuple) and isinstance(have, tuple):
                items[key] = _ranges_subtract(amount, have)
            elif isinstance(amount, frozenset) and isinstance(have, frozenset):
                items[key] = amount - have
            else:
                items[key] = amount
        return Resources(items)

    # --- views ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[ResourceKey, Amount]]:
        return iter(self._items.items())

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resources) and self._items == other._items

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __str__(self) -> str:
        parts = []
        for key, amount in sorted(self._items.items(), key=lambda kv: _sort_key(kv[0])):
            role = f"({key.role})" if key.role != "*" else ""
            parts.append(f"{key.name}{role}:{_format_amount(amount)}")
        return ";".join(parts)

    def __repr__(self) -> str:
        return f"Resources({str(self)!r})"

    def scalar(self, name: str) -> float:
        """Total of scalar ``name`` over every role, as a float."""
        return self.scalar_fixed(name) / SCALE

    def scalar_fixed(self, name: str) -> int:
        return self.fixed_totals().get(name, 0)

    def ranges(self, name: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for key, amount in self._items.items():
            if key.name == name and isinstance(amount, tuple):
                spans.extend(amount)
        return list(_normalize(spans))

    def names(self) -> set[str]:
        return {key.name for key in self._items}

    def filter(self, predicate: Callable[[ResourceKey], bool]) -> Resources:
        return Resources({k: a for k, a in self._items.items() if predicate(k)})

    def volumes(self) -> list[ResourceKey]:
        """The persistent volumes among these resources."""
        return [key for key in self._items if key.volume is not None]

    def unreserved(self) -> Resources:
        return self.filter(lambda k: k.role == "*")

    def reserved(self, role: str | None = None) -> Resources:
        return self.filter(lambda k: k.role != "*" and (role is None or k.role == role))

    def allocatable_to(self, role: str) -> Resources:
        """What a framework in ``role`` may be offered: unreserved plus reserved for ``role``."""
        return self.filter(lambda k: k.role in ("*", role))

    def fixed_totals(self) -> dict[str, int]:
        """Scalar totals by name, in thousandths, across roles (for DRF shares). Cached: values
        are immutable, and allocators ask for this on every allocation. Do not mutate it."""
        if self._totals is None:
            totals: dict[str, int] = {}
            for key, amount in self._items.items():
                if isinstance(amount, int):
                    totals[key.name] = totals.get(key.name, 0) + amount
            self._totals = totals
        return self._totals

    @property
    def has_reservations(self) -> bool:
        if self._reserved is None:
            self._reserved = any(key.role != "*" for key in self._items)
        return self._reserved

    def shrink_unreserved(self, caps: dict[str, int]) -> Resources:
        """The same resources with each unreserved scalar named in ``caps`` cut down to at most
        that many thousandths (quota limits and headroom chop offers this way)."""
        items = dict(self._items)
        changed = False
        for key, amount in self._items.items():
            cap = caps.get(key.name)
            if cap is not None and key.role == "*" and isinstance(amount, int) and amount > cap:
                items[key] = max(0, cap)
                changed = True
        return Resources(items) if changed else self

    def to_json(self) -> dict[str, object]:
        """Mesos ``/state`` style: ``{"cpus": 2.0, "mem": 1024.0, "ports": "[31000-32000]"}``.
        Computed once per value (``/state`` renders it for every task, and tasks of one shape
        share one value); each caller gets its own copy."""
        if self._json is None:
            self._json = self._to_json()
        return dict(self._json)

    def _to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in sorted(self.names()):
            amounts = [a for k, a in self._items.items() if k.name == name]
            if isinstance(amounts[0], int):
                out[name] = sum(amounts) / SCALE  # type: ignore[arg-type]  # one name, one kind: ints
            elif isinstance(amounts[0], tuple):
                out[name] = _format_amount(tuple(self.ranges(name)))
            else:
                out[name] = _format_amount(frozenset().union(*amounts))  # type: ignore[arg-type]  # sets
        return out

    def range_count(self, name: str) -> int:
        return _ranges_size(tuple(self.ranges(name)))

    def item_count(self, name: str) -> int:
        """How many distinct values a ranges or set resource holds (ports, disks...)."""
        items: set[str] = set()
        for key, amount in self._items.items():
            if key.name == name and isinstance(amount, frozenset):
                items |= amount
        return self.range_count(name) + len(items)


EMPTY = Resources()

_FROM_WIRE: dict[tuple[Resource, ...], Resources] = {}
_FROM_WIRE_LIMIT = 4096  # distinct task shapes remembered; beyond it the memo starts over
