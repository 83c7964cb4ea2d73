"""Decline filters: Mesos's ``RefusedOfferFilter``, resource-aware and per role.

Declining resources with ``refuse_seconds`` (DECLINE, or the unused part of an ACCEPT) installs
a filter for that framework, agent and role holding what was declined; until it expires, an
offer of the agent in that role is refused only if the declined resources *contain* it, so a
bigger offer of the agent (others' tasks ended, or an agent split between two roles whole
again) gets through. A framework keeps its filters by agent (``FrameworkState.filters``); these
functions read and change that mapping, and ``Frameworks`` calls them. Pure.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from tepui.sdk.resources import Resources

DEFAULT_REFUSE_SECONDS = 5.0

FiltersByAgent = dict[str, list["DeclineFilter"]]


class DeclineFilter(NamedTuple):
    """Mesos's ``RefusedOfferFilter``: until ``expires``, offers of the agent in ``role`` that
    ``declined`` contains are refused. (A tuple: a decline makes one, on the hot path.)"""

    role: str
    declined: Resources
    expires: float


def add_filter(filters: list[DeclineFilter], new: DeclineFilter) -> None:
    """Mesos: every decline adds a filter and an offer is refused while any filter of its
    role contains it, so a shorter decline never shortens a longer one. A filter that
    another refuses everything of, at least as long, is dropped (the list stays short)."""
    for old in filters:
        if old.role == new.role and old.expires >= new.expires and old.declined.contains(new.declined):
            return
    filters[:] = [old for old in filters if not (
        old.role == new.role and new.expires >= old.expires and new.declined.contains(old.declined))]
    filters.append(new)


def refuses(by_agent: FiltersByAgent, agent_id: str, filters: list[DeclineFilter], role: str,
            offered: Resources, now: float) -> bool:
    """Whether a live filter of the agent (``filters``, its entry in ``by_agent``) refuses
    ``offered``; drops the expired ones on the way."""
    refused = False
    expired = False
    for entry in filters:
        if now >= entry.expires:
            expired = True
        elif entry.role == role and (entry.declined is offered or entry.declined.contains(offered)):
            refused = True
            break
    if expired:
        kept = [entry for entry in filters if now < entry.expires]
        if kept:
            filters[:] = kept
        else:
            del by_agent[agent_id]
    return refused


def filtered_until(filters: Iterable[DeclineFilter], role: str, offered: Resources, now: float) -> float | None:
    """When ``offered`` (of the agent, in the role) stops being refused; None if it is not."""
    until = None
    for entry in filters:
        if now < entry.expires and entry.role == role and entry.declined.contains(offered):
            until = entry.expires if until is None else max(until, entry.expires)
    return until


def clear_roles(by_agent: FiltersByAgent, roles: set[str]) -> None:
    """REVIVE: the filters of ``roles`` go, on every agent."""
    for agent_id, filters in list(by_agent.items()):
        kept = [f for f in filters if f.role not in roles]
        if kept:
            by_agent[agent_id] = kept
        else:
            del by_agent[agent_id]
