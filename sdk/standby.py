"""What a framework instance that does not lead answers on its API port (pure: no I/O).

Why it answers at all: a client, a load balancer or an operator holding this instance's address
must find the leader without asking ZooKeeper, as with a standby Mesos master (``/redirect``, 307
on the API) and a standby Marathon (which proxies; we redirect, so no call is ever carried out
twice by a proxy that lost its answer). 307, not 302: the client repeats the same method with the
same body. No leader known yet (an election in progress, the leader still recovering its store):
503 with ``Retry-After``, so a client retries rather than gives up. ``/health`` and
``/v1/health`` answer 200 — the instance is healthy, it waits — and say who leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tepui.sdk.leadership import LeaderInfo

__all__ = ["HEALTH_PATHS", "RETRY_AFTER_SECONDS", "StandbyAnswer", "standby_answer"]

HEALTH_PATHS = frozenset({"/health", "/v1/health"})
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class StandbyAnswer:
    """Status, extra headers and JSON body of one answer."""

    code: int
    headers: tuple[tuple[str, str], ...]
    body: dict[str, Any]


def _leader(leader: LeaderInfo | None) -> dict[str, Any] | None:
    return None if leader is None else {"id": leader.id, "http": leader.http, "epoch": leader.epoch}


def standby_answer(target: str, own: LeaderInfo, leader: LeaderInfo | None, elected: bool) -> StandbyAnswer:
    """The answer to a call of ``target`` (path and query, as the client sent them) made to the
    instance ``own``. ``leader``: the serving leader as last seen in ZooKeeper; ``elected``: this
    instance won and is recovering its store (it serves once recovered)."""
    role = "recovering" if elected else "standby"
    usable = leader if leader is not None and leader.id != own.id and leader.http and not elected else None
    path = target.partition("?")[0]
    if path in HEALTH_PATHS:
        return StandbyAnswer(200, (), {"ok": True, "role": role, "instance": own.id, "subscribed": False,
                                       "leader": _leader(usable)})
    if usable is not None:
        location = usable.http.rstrip("/") + (target if target.startswith("/") else "/" + target)
        return StandbyAnswer(307, (("Location", location),), {
            "error": f"this instance ({own.id}) is a standby; the leader ({usable.id}) answers at {usable.http}",
            "reason": "NOT_LEADER", "leader": _leader(usable)})
    why = ("this instance was just elected and is recovering its store" if elected
           else "no instance leads yet (an election is in progress, or the new leader is recovering)")
    return StandbyAnswer(503, (("Retry-After", str(RETRY_AFTER_SECONDS)),), {
        "error": f"{why}; retry in a moment", "reason": "NO_LEADER", "instance": own.id, "role": role})
