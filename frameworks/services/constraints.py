"""Placement constraints on agent hostname and attributes, with Marathon's semantics.

Why a separate pure module: the launcher asks "may this offer take one more instance?" for every
offer, and the "why isn't it running?" feature asks the same question to explain a refusal. Both
need the same answer and a sentence a person can act on, so :func:`check` returns ``None`` or that
sentence, and never touches the network, the clock or the store.

A constraint is ``[field, operator, value?]`` exactly as in Marathon's ``constraints`` array:

* ``field`` is ``hostname`` (or ``@hostname``) for the agent's hostname, any other string names an
  agent attribute (``--attributes rack:r1;zone:a``).
* Operators (Marathon ``Constraints.scala``):

  - ``UNIQUE``: no two instances share the field's value. Takes no value.
  - ``CLUSTER [value]``: every instance runs where the field equals ``value``; without a value,
    where it equals the value of the instances already placed (the first one chooses).
  - ``GROUP_BY [count]``: spread instances evenly over the field's values. An offer is accepted when
    its value is not used yet, or (once at least ``count`` distinct values are in use) when its
    value's group is among the smallest.
  - ``MAX_PER count``: at most ``count`` instances per value of the field.
  - ``LIKE regex`` / ``UNLIKE regex``: the field's value must (must not) fully match the regex.
  - ``IS value``: the field's value must equal ``value`` exactly.

* An agent without the attribute fails every operator except ``UNLIKE`` (Marathon's
  ``checkMissingAttribute``): an instance pinned to ``rack LIKE r.*`` must not land on an agent
  that has no rack at all.

Marathon's ``@region``/``@zone`` pseudo-fields are not supported (offers carry no fault domain
yet); they are read as ordinary attributes named ``@region``/``@zone`` and so never match.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import msgspec

__all__ = [
    "Constraint",
    "ConstraintError",
    "OPERATORS",
    "HOSTNAME_FIELDS",
    "Placed",
    "check",
    "check_one",
    "validate_constraint",
]

OPERATORS: tuple[str, ...] = ("UNIQUE", "CLUSTER", "GROUP_BY", "MAX_PER", "LIKE", "UNLIKE", "IS")
HOSTNAME_FIELDS = frozenset({"hostname", "@hostname"})

#: A placed instance: the hostname and attributes of the agent it runs (or is launching) on.
Placed = tuple[str, Mapping[str, str]]


class Constraint(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, array_like=True, omit_defaults=True
):
    """``[field, operator, value?]``. ``array_like`` so it reads and writes exactly like Marathon's
    three-element arrays. ``value`` is kept as text (Marathon sends counts as strings too); the
    spec parser turns a YAML integer such as ``[rack, MAX_PER, 2]`` into ``"2"``."""

    field: str
    operator: str
    value: str | None = None

    def __str__(self) -> str:
        return " ".join(p for p in (self.field, self.operator, self.value) if p is not None)


class ConstraintError(ValueError):
    """A constraint that cannot be evaluated; the message says what to write instead."""


def validate_constraint(constraint: Constraint) -> None:
    """Raises :class:`ConstraintError` when the constraint is malformed.

    Done at spec-parse time, so that a typo is refused when the app is submitted rather than
    silently making every offer unusable later."""
    if not constraint.field.strip():
        raise ConstraintError("empty field: name hostname or an agent attribute such as rack")
    op, value = constraint.operator, constraint.value
    if op not in OPERATORS:
        raise ConstraintError(f"unknown operator {op!r} ({', '.join(OPERATORS)})")
    if op == "UNIQUE" and value is not None:
        raise ConstraintError(f"UNIQUE takes no value, got {value!r}: write [{constraint.field}, UNIQUE]")
    if op in ("LIKE", "UNLIKE", "IS") and value is None:
        raise ConstraintError(f"{op} needs a value: write [{constraint.field}, {op}, VALUE]")
    if op == "MAX_PER":
        if value is None:
            raise ConstraintError(f"MAX_PER needs a count: write [{constraint.field}, MAX_PER, 2]")
        limit = _as_count(value)
        if limit is None or limit < 1:
            raise ConstraintError(f"MAX_PER count must be an integer >= 1, got {value!r}")
    if op == "GROUP_BY" and value is not None and _as_count(value) is None:
        raise ConstraintError(f"GROUP_BY count must be an integer >= 0, got {value!r}")
    if op in ("LIKE", "UNLIKE"):
        try:
            _regex(value or "")
        except re.error as exc:
            raise ConstraintError(f"invalid regular expression {value!r}: {exc}") from None


def check(
    constraints: Sequence[Constraint],
    offer_hostname: str,
    offer_attributes: Mapping[str, str],
    placed: Sequence[Placed],
) -> str | None:
    """``None`` when one more instance may run on this agent, else a sentence naming the first
    constraint that refuses it.

    ``placed`` holds the app's instances that count against the constraints (running, staging or
    launched earlier in the same offer round): the caller decides, since that choice differs
    between scaling and a rolling upgrade."""
    for constraint in constraints:
        reason = check_one(constraint, offer_hostname, offer_attributes, placed)
        if reason is not None:
            return reason
    return None


def check_one(
    constraint: Constraint,
    offer_hostname: str,
    offer_attributes: Mapping[str, str],
    placed: Sequence[Placed],
) -> str | None:
    """One constraint of :func:`check`."""
    validate_constraint(constraint)
    field, op, value = constraint.field, constraint.operator, constraint.value
    prefix = f"constraint {constraint}: "
    is_host = field in HOSTNAME_FIELDS
    mine = _field_value(field, offer_hostname, offer_attributes)
    if mine is None:
        if op == "UNLIKE":
            return None
        return prefix + f"{offer_hostname} has no attribute {field}"
    shown = offer_hostname if is_host else f"{offer_hostname} ({field}={mine})"
    values = [_field_value(field, host, attrs) for host, attrs in placed]

    if op == "UNIQUE":
        if mine in values:
            if is_host:
                return prefix + f"{offer_hostname} already runs an instance"
            return prefix + f"an instance already runs on {field}={mine}"
        return None
    if op == "CLUSTER":
        wanted = value if value is not None else next((v for v in values if v is not None), None)
        if wanted is None or mine == wanted:
            return None
        why = "" if value is not None else " where the instances already run"
        return prefix + f"{shown} is not on {field}={wanted}{why}"
    if op == "GROUP_BY":
        minimum = _as_count(value) if value is not None else 0
        groups = Counter(values)
        if mine not in groups:
            return None
        smallest = min(groups.values())
        if len(groups) < (minimum or 0):
            return prefix + (
                f"only {len(groups)} of {minimum} {field} values are used yet and "
                f"{field}={mine} already runs {groups[mine]} instance(s)"
            )
        if groups[mine] != smallest:
            return prefix + (
                f"{field}={mine} already runs {groups[mine]} instance(s) while the smallest "
                f"group runs {smallest}"
            )
        return None
    if op == "MAX_PER":
        limit = _as_count(value or "")
        count = values.count(mine)
        if limit is not None and count >= limit:
            return prefix + f"{field}={mine} already runs {count} instance(s)"
        return None
    if op == "LIKE":
        if _regex(value or "").fullmatch(mine):
            return None
        return prefix + f"{shown} does not match {value}"
    if op == "UNLIKE":
        if _regex(value or "").fullmatch(mine):
            return prefix + f"{shown} matches {value}"
        return None
    # IS
    if mine == value:
        return None
    return prefix + f"{shown} is not {value}"


def _field_value(field: str, hostname: str, attributes: Mapping[str, str]) -> str | None:
    return hostname if field in HOSTNAME_FIELDS else attributes.get(field)


def _as_count(text: str) -> int | None:
    """A non-negative integer written as text, or ``None``."""
    text = text.strip()
    return int(text) if text.isdigit() else None


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
