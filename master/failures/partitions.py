"""Partitions, the master's record of them: the :class:`PartitionTracker` owns the ping
sequence and interval, the agents waiting for a removal slot, and the unreachable and gone
agents — a component of :class:`tepui.master.core.MasterCore`. What happens to an agent found
silent (its tasks, its offers, the registry) is the flow in
:mod:`tepui.master.failures.failure_detection`; an agent coming back, :mod:`tepui.master.members.agent_membership`
and :mod:`tepui.master.failures.readoption`; the reconciliation answers that depend on where an agent
is, :mod:`tepui.master.tasks.task_calls`.

Mesos semantics, cited where they matter:

- An agent that answers no ping for ``agent_ping_interval × max_agent_ping_timeouts`` is
  marked UNREACHABLE: its tasks become TASK_UNREACHABLE for PARTITION_AWARE frameworks (LOST
  for the others), the registry moves it from ``agents`` to ``unreachable``, and the master
  stops pinging it. Tepui detects in 10 s by default (2 s × 5); Mesos waits 75 s (15 s × 5).
- Removals are rate limited (``--agent_removal_rate_limit``): agents found silent queue up and
  are marked one per slot; an agent heard from while it waits cancels its removal.
- An unreachable agent that re-registers is admitted again under its id, with the resources
  the registry kept (reservations, volumes); its tasks come back. After ``agent_gone_timeout``
  it is GONE instead: its tasks end TASK_GONE (LOST), and it may never come back under its id
  (Mesos ``markAgentGone``; the timeout plays the part of ``--registry_max_agent_age``).
- After a failover, agents the registry knew that do not re-register within
  ``agent_reregister_timeout`` become unreachable, unless more than
  ``recovery_agent_removal_limit`` percent of them are missing: then the master exits, because
  that looks like a partition of the master, not the failure of that many machines.
- Explicit reconciliation gives no answer for a task that may be on an agent still expected
  to re-register; the framework asks again (Mesos reconciliation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, MutableMapping

from tepui.master.events import AgentGone, MasterEffect, Send
from tepui.master.records import UnreachableAgent
from tepui.master.durability.registry import gone_entry, unreachable_entry
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer
from tepui.sdk.protocol import agent as am

if TYPE_CHECKING:
    from tepui.master.config import MasterConfig
    from tepui.master.durability.registry import Recovered


@dataclass(frozen=True)
class RemovalRate:
    """At most ``permits`` agents marked unreachable per ``seconds``: one every
    ``seconds / permits`` (Mesos ``--agent_removal_rate_limit``, e.g. ``1/20mins``)."""

    permits: int
    seconds: float

    @property
    def interval(self) -> float:
        return self.seconds / self.permits

    def __str__(self) -> str:
        return f"{self.permits}/{self.seconds:g}s"


_UNITS = {
    "ms": 0.001, "s": 1.0, "sec": 1.0, "secs": 1.0, "m": 60.0, "min": 60.0, "mins": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def parse_removal_rate(text: str | None) -> RemovalRate | None:
    """``N/DURATION`` such as ``1/20mins``, ``5/1m`` or ``1/30s`` (a bare unit means one of
    it: ``10/min``); ``unlimited`` (or nothing) for no limit. Raises ValueError saying what is
    wrong and what is expected."""
    if text is None or text.strip().lower() in ("", "unlimited", "none"):
        return None
    match = _RATE.match(text.lower())
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(f"agent removal rate {text!r} is not N/DURATION: write e.g. 1/20mins, 5/1m or 1/30s "
                         "(units: ms, s/secs, m/mins, h/hrs, d/days, w/weeks), or 'unlimited'")
    permits, amount = int(match.group(1)), float(match.group(2) or 1)
    seconds = amount * _UNITS[match.group(3)]
    if permits < 1 or seconds <= 0:
        raise ValueError(f"agent removal rate {text!r} must allow at least one removal per positive duration")
    return RemovalRate(permits, seconds)


def parse_percent(text: str) -> float:
    """``50%`` or ``50`` → 50.0, between 0 and 100 (Mesos ``--recovery_agent_removal_limit``)."""
    value = text.strip().removesuffix("%").strip()
    try:
        percent = float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage: write e.g. 100% or 50") from None
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"{text!r} is not between 0% and 100%")
    return percent


class PartitionTracker:
    def __init__(self, config: MasterConfig, counters: MutableMapping[str, int]) -> None:
        self.unreachable: dict[str, UnreachableAgent] = {}
        self.gone: dict[str, float] = {}  # agent id → gone since, oldest first
        self._removals: dict[str, float] = {}  # agents waiting for a removal slot → queued at
        self._next_removal_at = float("-inf")
        self._ping_seq = 0
        self._config = config
        self._counters = counters  # the master's, so that /metrics shows them

    # --- pings ----------------------------------------------------------------------------

    def ping_interval(self, agents: int) -> float:
        """The configured interval, or longer on a cluster so large that pings would pass
        ``max_agent_pings_per_second``: pings and pongs then stop crowding out real work (at
        10,000 agents and 2 s they were 10,000 messages a second both ways)."""
        interval = self._config.agent_ping_interval
        rate = self._config.max_agent_pings_per_second
        if rate:
            interval = max(interval, agents / rate)
        return interval

    def silence_limit(self, agents: int) -> float:
        """How long an agent may answer no ping before it is queued for removal."""
        return self.ping_interval(agents) * self._config.max_agent_ping_timeouts

    def next_ping(self) -> int:
        self._ping_seq += 1
        return self._ping_seq

    # --- rate-limited removals ------------------------------------------------------------

    def removal_queued(self, agent_id: str) -> bool:
        return agent_id in self._removals

    def queue_removal(self, agent_id: str, now: float) -> None:
        self._removals.setdefault(agent_id, now)
        self._counters["agent_unreachable_scheduled"] += 1

    def cancel_removal(self, agent_id: str) -> bool:
        """Whether the agent was waiting for a removal slot (it is not any more)."""
        return self._removals.pop(agent_id, None) is not None

    @property
    def removals_waiting(self) -> bool:
        return bool(self._removals)

    def next_slot(self, now: float) -> float | None:
        """None when a removal may happen now, else when the removal rate allows the next."""
        if self._config.agent_removal_rate is not None and now < self._next_removal_at:
            return self._next_removal_at
        return None

    def pop_removal(self) -> str:
        """The agent queued first (its removal is now being decided)."""
        agent_id = next(iter(self._removals))
        del self._removals[agent_id]
        return agent_id

    def slot_used(self, now: float) -> None:
        rate = self._config.agent_removal_rate
        if rate is not None:
            self._next_removal_at = now + rate.interval

    # --- unreachable and gone agents -------------------------------------------------------

    def add_unreachable(self, agent_id: str, unreachable: UnreachableAgent, now: float,
                        out: list[MasterEffect]) -> None:
        self.unreachable[agent_id] = unreachable
        out.append(unreachable_entry(agent_id, unreachable))
        out.append(ScheduleTimer(max(now, unreachable.since + self._config.agent_gone_timeout), AgentGone(agent_id)))

    def take_unreachable(self, agent_id: str, out: list[MasterEffect]) -> UnreachableAgent | None:
        """The agent, no longer unreachable (back, or gone): out of the registry's table, its
        gone timer cancelled."""
        unreachable = self.unreachable.pop(agent_id, None)
        if unreachable is not None:
            out.append(unreachable_entry(agent_id, None))
            out.append(CancelTimer(AgentGone(agent_id)))
        return unreachable

    def gone_due(self, agent_id: str, now: float) -> bool:
        """Whether the agent has been unreachable for ``agent_gone_timeout`` (a timer of an
        earlier episode, the agent back and lost again since, is not)."""
        unreachable = self.unreachable.get(agent_id)
        return unreachable is not None and now >= unreachable.since + self._config.agent_gone_timeout

    def add_gone(self, agent_id: str, since: float, out: list[MasterEffect]) -> None:
        """The registry keeps at most ``max_gone_agents`` (Mesos ``--registry_max_agent_count``):
        past that the oldest are forgotten, so autoscaled clusters do not grow it forever."""
        self.gone[agent_id] = since
        out.append(gone_entry(agent_id, since))
        while len(self.gone) > self._config.max_gone_agents:
            oldest = next(iter(self.gone))
            del self.gone[oldest]
            out.append(gone_entry(oldest, None))

    def refuse_gone(self, peer: bytes, agent_id: str, now: float, out: list[MasterEffect]) -> None:
        """Mesos: a gone agent may not re-register under its id; it is told to shut down, and
        why, so that its operator restarts it afresh (it then registers as a new agent)."""
        since = self.gone[agent_id]
        message = (f"agent {agent_id} is gone: it was unreachable for more than {self._config.agent_gone_timeout:g} s "
                   f"(gone for {now - since:.0f} s) and its tasks were reported GONE or LOST; it may not "
                   "re-register under this id. Restart the agent without its old state (its checkpointed agent "
                   "id) and it registers as a new agent.")
        self._counters["gone_agents_refused"] += 1
        out.append(Send(peer, am.ShutdownAgent(message)))
        out.append(Log("warning", "gone_agent_refused", {"agent_id": agent_id}))

    def recover(self, recovered: Recovered, now: float, out: list[MasterEffect]) -> None:
        """After a failover: the registry's unreachable agents stay so (their gone timers set
        again), its gone agents stay refused."""
        self.gone = dict(recovered.gone)
        for agent_id, unreachable in recovered.unreachable.items():
            self.unreachable[agent_id] = unreachable
            out.append(ScheduleTimer(max(now, unreachable.since + self._config.agent_gone_timeout),
                                     AgentGone(agent_id)))
