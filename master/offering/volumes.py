"""CREATE and DESTROY offer operations (Mesos persistent volumes), pure.

Mesos semantics: a framework turns *reserved* disk of its offer's role into a persistent
volume (an id, unique on the agent, and the path where tasks see it, relative to their
sandbox); the volume is offered again to the same role after every task that used it ends, with
its data intact. DESTROY turns an unused volume back into plain reserved disk and the agent
deletes its data. Each function returns ``(consumed, converted)`` for the allocator, or an
error sentence.
"""

from __future__ import annotations


from tepui.master.admission.ids import validate_id
from tepui.sdk.protocol.values import Resource
from tepui.sdk.resources import InvalidResources, Resources


def _parse(what: str, volumes: list[Resource]) -> tuple[Resources | None, str | None]:
    try:
        parsed = Resources.from_wire(volumes)
    except InvalidResources as exc:
        return None, f"{what}: {exc}"
    if not parsed:
        return None, f"{what} names no volumes"
    return parsed, None


def _plain(resources: Resources) -> Resources:
    """The same reserved disk without the volume marking."""
    return Resources({key._replace(volume=None, volume_path=None, volume_principal=None,
                                   volume_mode=None): amount for key, amount in resources})


def plan_create(volumes: list[Resource], role: str, available: Resources,
                existing: set[str]) -> tuple[Resources, Resources] | str:
    converted, problem = _parse("CREATE", volumes)
    if problem:
        return problem
    assert converted is not None
    seen: set[str] = set()
    for key in [k for k, _ in converted]:
        if key.volume is None or key.name != "disk":
            return f"CREATE takes disk resources with disk.persistence set, not {key.name}"
        if key.role != role or key.reservation is None:
            return (f"CREATE of volume {key.volume!r} refused: volumes are made of disk reserved for the offer's "
                    f"role {role!r} (RESERVE it first)")
        problem = validate_id("persistence.id", key.volume)
        if problem:
            return f"CREATE refused: {problem}"
        if key.volume in existing or key.volume in seen:
            return f"CREATE refused: volume {key.volume!r} already exists on this agent"
        seen.add(key.volume)
        path = key.volume_path or ""
        if not path or path.startswith("/") or ".." in path.split("/"):
            return f"CREATE of volume {key.volume!r}: volume.container_path must be a relative path inside the sandbox"
    consumed = _plain(converted)
    if not available.contains(consumed):
        return f"CREATE needs {consumed} reserved in the offer (missing {consumed.missing_from(available)})"
    return consumed, converted


def plan_destroy(volumes: list[Resource], role: str, available: Resources) -> tuple[Resources, Resources] | str:
    consumed, problem = _parse("DESTROY", volumes)
    if problem:
        return problem
    assert consumed is not None
    for key, _amount in consumed:
        if key.volume is None or key.role != role:
            return f"DESTROY takes volumes of the offer's role {role!r}"
    if not available.contains(consumed):
        return (f"DESTROY names {consumed}, which the offer does not hold (in use by a task, or unknown; "
                f"missing {consumed.missing_from(available)})")
    return consumed, _plain(consumed)
