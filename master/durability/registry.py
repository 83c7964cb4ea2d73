"""The master's registry: what survives a master restart (Mesos's registry), pure.

The agent is the source of truth for tasks (DESIGN §6), so the master persists little:
admitted agents (with their total resources, which carry dynamic reservations and persistent
volumes), unreachable agents (the same, and since when) and gone agents (refused forever),
frameworks (with their failover timeout and principal), role weights and quotas.
The core emits ``Persist`` effects; the shell writes each batch in one store transaction and
exits if a write fails (a master must never run with unpersisted state). On start the shell
reads the store back and hands the core a :class:`Recovered`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, TypeVar

import msgspec

from tepui.master.records import AgentRecord, UnreachableAgent
from tepui.offers.roles import Quota
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo

AGENTS = "agents"
UNREACHABLE = "unreachable"
GONE = "gone"
FRAMEWORKS = "frameworks"
WEIGHTS = "weights"
QUOTAS = "quotas"
NAMESPACES = (AGENTS, UNREACHABLE, GONE, FRAMEWORKS, WEIGHTS, QUOTAS)
T = TypeVar("T")


@dataclass(frozen=True)
class Persist:
    """Write (or, with ``value`` None, delete) one registry entry."""

    ns: str
    key: str
    value: bytes | None


class _QuotaEntry(msgspec.Struct, frozen=True):
    guarantee: dict[str, int] = {}
    limit: dict[str, int] = {}


class _UnreachableEntry(msgspec.Struct, frozen=True):
    since: float
    agent: AgentInfo


class _GoneEntry(msgspec.Struct, frozen=True):
    since: float


_encoder = msgspec.json.Encoder()


def agent_info_of(agent: AgentRecord) -> AgentInfo:
    """The agent as the registry keeps it: its current total carries reservations and volumes."""
    return AgentInfo(hostname=agent.hostname, resources=agent.total.to_wire(), attributes=dict(agent.attributes),
                     id=agent.agent_id, http_port=agent.http_port, address=agent.address, http_tls=agent.http_tls)


def agent_entry(agent: AgentRecord) -> Persist:
    return Persist(AGENTS, agent.agent_id, _encoder.encode(agent_info_of(agent)))


def unreachable_entry(agent_id: str, unreachable: UnreachableAgent | None) -> Persist:
    """Write (or, with None, delete) an unreachable agent."""
    if unreachable is None:
        return Persist(UNREACHABLE, agent_id, None)
    return Persist(UNREACHABLE, agent_id, _encoder.encode(_UnreachableEntry(unreachable.since, unreachable.info)))


def gone_entry(agent_id: str, since: float | None) -> Persist:
    """Write (or, with None, delete) a gone agent."""
    return Persist(GONE, agent_id, None if since is None else _encoder.encode(_GoneEntry(since)))


def framework_entry(info: FrameworkInfo) -> Persist:
    assert info.id is not None
    return Persist(FRAMEWORKS, info.id, _encoder.encode(info))


def weight_entry(role: str, weight: float) -> Persist:
    return Persist(WEIGHTS, role, _encoder.encode(weight))


def quota_entry(role: str, quota: Quota | None) -> Persist:
    if quota is None:
        return Persist(QUOTAS, role, None)
    return Persist(QUOTAS, role, _encoder.encode(_QuotaEntry(dict(quota.guarantee), dict(quota.limit))))


@dataclass
class Recovered:
    agents: dict[str, AgentInfo] = field(default_factory=dict)
    frameworks: dict[str, FrameworkInfo] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    quotas: dict[str, Quota] = field(default_factory=dict)
    unreachable: dict[str, UnreachableAgent] = field(default_factory=dict)
    gone: dict[str, float] = field(default_factory=dict)  # agent id → gone since

    @property
    def empty(self) -> bool:
        return not (self.agents or self.frameworks or self.weights or self.quotas or self.unreachable or self.gone)


class CorruptRegistry(ValueError):
    """An entry that does not decode: the operator must look, not the master guess."""


def _decoded(entries: dict[str, dict[str, bytes]], ns: str, kind: type[T]) -> Iterator[tuple[str, T]]:
    """Each entry of ``ns`` decoded as ``kind``; raises CorruptRegistry naming one that does not."""
    for key, value in entries.get(ns, {}).items():
        try:
            yield key, msgspec.json.decode(value, type=kind)
        except msgspec.DecodeError as exc:
            raise CorruptRegistry(f"registry entry {ns}/{key} does not decode: {exc}") from None


def decode(entries: dict[str, dict[str, bytes]]) -> Recovered:
    """Raises CorruptRegistry naming the entry that does not decode."""
    recovered = Recovered()
    recovered.agents.update(_decoded(entries, AGENTS, AgentInfo))
    recovered.frameworks.update(_decoded(entries, FRAMEWORKS, FrameworkInfo))
    recovered.weights.update(_decoded(entries, WEIGHTS, float))
    for key, quota in _decoded(entries, QUOTAS, _QuotaEntry):
        recovered.quotas[key] = Quota(guarantee=dict(quota.guarantee), limit=dict(quota.limit))
    for key, unreachable in _decoded(entries, UNREACHABLE, _UnreachableEntry):
        recovered.unreachable[key] = UnreachableAgent(unreachable.agent, unreachable.since)
    # Oldest first: the master forgets the oldest gone agents first when it keeps too many.
    gone = sorted((entry.since, key) for key, entry in _decoded(entries, GONE, _GoneEntry))
    recovered.gone = {key: since for since, key in gone}
    return recovered
