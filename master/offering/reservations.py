"""RESERVE and UNRESERVE offer operations (Mesos dynamic reservations), pure.

Mesos semantics: a framework reserves *offered* unreserved resources for its role (the offer's
allocation role); the reservation carries the framework's principal. Within one ACCEPT the
operations apply in order, so a later LAUNCH can use what an earlier RESERVE made. UNRESERVE
turns dynamically reserved resources of the framework's role back into unreserved ones; static
reservations (agent flags) cannot be unreserved — they change only with the agent's flags.

Each function returns ``(consumed, converted)`` for the allocator, or an error sentence.
"""

from __future__ import annotations

from tepui.sdk.protocol.values import Resource
from tepui.sdk.resources import InvalidResources, Resources, ResourceKey


def _parse(resources: list[Resource]) -> tuple[Resources | None, str | None]:
    try:
        parsed = Resources.from_wire(resources)
    except InvalidResources as exc:
        return None, f"invalid resources: {exc}"
    if not parsed:
        return None, "names no resources"
    return parsed, None


def _as_unreserved(resources: Resources) -> Resources:
    return Resources({ResourceKey(key.name): amount for key, amount in resources})


def plan_reserve(resources: list[Resource], role: str, principal: str | None,
                 available: Resources) -> tuple[Resources, Resources] | str:
    converted, problem = _parse(resources)
    if problem:
        return f"RESERVE {problem}"
    assert converted is not None
    for key, _amount in converted:
        if key.role != role:
            return (f"RESERVE of {key.name} for role {key.role!r} refused: the offer was made to role {role!r}; "
                    "a framework reserves only for the role of its offer")
        if key.reservation != "DYNAMIC":
            return f"RESERVE of {key.name} needs reservation.type DYNAMIC"
        if key.principal != principal:
            return (f"RESERVE of {key.name} names principal {key.principal!r}, but the framework's principal "
                    f"is {principal!r}")
    consumed = _as_unreserved(converted)
    if not available.contains(consumed):
        return (f"RESERVE asks for {consumed} unreserved, but the offer holds only {available.unreserved()} "
                f"unreserved (missing {consumed.missing_from(available)})")
    return consumed, converted


def plan_unreserve(resources: list[Resource], role: str, available: Resources) -> tuple[Resources, Resources] | str:
    consumed, problem = _parse(resources)
    if problem:
        return f"UNRESERVE {problem}"
    assert consumed is not None
    for key, _amount in consumed:
        if key.role != role or key.reservation != "DYNAMIC":
            return (f"UNRESERVE of {key.name}({key.role}) refused: only resources dynamically reserved for the "
                    f"offer's role {role!r} can be unreserved")
    if not available.contains(consumed):
        return f"UNRESERVE names {consumed}, which the offer does not hold (missing {consumed.missing_from(available)})"
    return consumed, _as_unreserved(consumed)
