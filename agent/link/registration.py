"""The agent's link with its master, pure: its id, registration with doubling backoff, epoch
fencing, and whether the master is still there.

Registration: REGISTER_AGENT until the agent has an id, REREGISTER_AGENT after (the caller
builds the message: it reports the tasks), retried with doubling backoff (Mesos
``--registration_backoff_factor``) until AGENT_(RE)REGISTERED. Master liveness: a master silent
for ``MISSED_PINGS`` of the ping intervals it announces (or the operator's
``master_silence_limit``) is gone — died, or the link is cut — and the agent re-registers, so
that the master reconciles its tasks (Mesos agent behaviour).

Epoch fencing (master/durability/epoch.py): a master claims a larger epoch than every earlier one before it
serves anyone, so a message from an older epoch comes from a master that has been superseded
(paused, partitioned, or its bytes queued across the failover) and is dropped and counted — it
must not kill, launch or ping-answer. A newer epoch on *any* message is adopted at once, not
only on (re)registration: it proves a newer master exists (Mesos: the agent follows the leader
its detector reports, not the one it registered with), and dropping the old master's messages
before re-registering with the new one can only drop a superseded master's.
"""

from __future__ import annotations

from dataclasses import dataclass

from tepui.agent.events import AgentEffect, MasterCheck, Register, SendToMaster
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import AgentInfo, FrameworkInfo, MasterInfo
from tepui.sdk.resources import Resources

MISSED_PINGS = 5  # silent for this many of the master's ping intervals → it is gone (Mesos)

Effect = AgentEffect


@dataclass(frozen=True)
class Identity:
    """What the agent tells the master about itself (its ``AgentInfo`` less the id)."""

    hostname: str
    resources: Resources
    attributes: dict[str, str]
    version: str
    boot_id: str | None
    previous_agent_id: str | None
    http_port: int | None
    address: str | None
    http_tls: bool
    task_user: str | None


@dataclass(frozen=True)
class Registered:
    """What an AGENT_(RE)REGISTERED changed."""

    new_id: bool  # the agent's id is not the one it had (the checkpoint holds it)
    newly: bool  # it was not registered: every unacknowledged update goes out again


class Registration:
    def __init__(self, identity: Identity, backoff: float, max_backoff: float,
                 silence_limit: float | None = None) -> None:
        self.identity = identity
        self.agent_id: str | None = None
        self.registered = False
        self.master_epoch = 0
        self.stale_epoch_dropped = 0  # messages from a superseded master, dropped (the agent's /health shows it)
        self.master_info: MasterInfo | None = None
        self.ping_interval = 15.0
        self.last_master_contact = 0.0
        self._initial_backoff = backoff
        self._max_backoff = max_backoff
        self._backoff = backoff
        self._silence_limit = silence_limit

    def agent_info(self) -> AgentInfo:
        me = self.identity
        return AgentInfo(hostname=me.hostname, resources=me.resources.to_wire(), attributes=dict(me.attributes),
                         id=self.agent_id, http_port=me.http_port, address=me.address, http_tls=me.http_tls,
                         task_user=me.task_user)

    def admit(self, epoch: int, kind: str, now: float, out: list[Effect]) -> bool:
        """Epoch fencing (see the module's docstring): False, logged and counted, for a
        superseded master's message; else the epoch is adopted and the master heard from."""
        if epoch < self.master_epoch:
            self.stale_epoch_dropped += 1
            out.append(Log("warning", "stale_master_message", {"epoch": epoch, "current": self.master_epoch,
                                                               "type": kind, "dropped": self.stale_epoch_dropped}))
            return False
        self.master_epoch = epoch
        self.last_master_contact = now
        return True

    def started(self, now: float) -> None:
        self.last_master_contact = now

    def register(self, message: am.RegisterAgent | am.ReregisterAgent, now: float, out: list[Effect]) -> None:
        """Sends ``message`` and arms the next attempt, backing off."""
        out.append(SendToMaster(message))
        out.append(ScheduleTimer(now + self._backoff, Register()))
        self._backoff = min(self._backoff * 2, self._max_backoff)

    def register_message(self, reports: list[am.TaskReport], frameworks: list[FrameworkInfo]
                         ) -> am.RegisterAgent | am.ReregisterAgent:
        me = self.identity
        if self.agent_id is None:
            return am.RegisterAgent(self.agent_info(), me.version, me.boot_id, me.previous_agent_id)
        return am.ReregisterAgent(self.agent_info(), me.version, reports, frameworks, me.boot_id)

    def accepted(self, agent_id: str, master_info: MasterInfo, ping_interval: float, now: float,
                 out: list[Effect]) -> Registered:
        """AGENT_(RE)REGISTERED: the id, the master, its ping interval; on a first answer the
        retries stop and the master's silence is watched."""
        first = self.agent_id is None
        new_id = self.agent_id != agent_id
        self.agent_id = agent_id
        self.master_info = master_info
        self.master_epoch = max(self.master_epoch, master_info.epoch)
        self.ping_interval = ping_interval
        if self.registered:
            return Registered(new_id, False)
        self.registered = True
        self._backoff = self._initial_backoff
        out.append(CancelTimer(Register()))
        out.append(ScheduleTimer(now + self.silence_limit(), MasterCheck()))
        out.append(Log("info", "agent_registered" if first else "agent_reregistered",
                       {"agent_id": agent_id, "master": master_info.address}))
        return Registered(new_id, True)

    def silence_limit(self) -> float:
        """The operator's limit, else the master's own (Mesos: the agent follows the ping
        timeout its master announces), so both sides give up on each other at about the same time."""
        if self._silence_limit is not None:
            return self._silence_limit
        return self.ping_interval * MISSED_PINGS

    def pinged(self, interval: float | None) -> None:
        if interval is not None and interval > 0:
            self.ping_interval = interval  # a growing cluster pings less often

    def master_silent(self, now: float, out: list[Effect]) -> bool:
        """True when the registered agent has not heard from its master for too long: it is
        then unregistered and must register again."""
        if not self.registered or now - self.last_master_contact <= self.silence_limit():
            return False
        self.registered = False
        out.append(Log("warning", "master_silent", {"seconds": round(now - self.last_master_contact, 1)}))
        return True

    def arm_master_check(self, now: float, out: list[Effect]) -> None:
        out.append(ScheduleTimer(now + self.silence_limit() / 5, MasterCheck()))

    def link_lost(self, out: list[Effect]) -> bool:
        """The connection came back after a loss: a master that restarted has forgotten us.
        True when the agent must register again now — also when it was already trying: its
        next try may be seconds of backoff away, and a master that answers is there now (the
        HA chaos saw new leaders get agents only at their next retry, 1–5 s late). Not for an
        agent without an id yet: a first REGISTER sent twice could be admitted twice, so its
        retry timer alone repeats it."""
        if not self.registered and self.agent_id is None:
            return False
        was_registered, self.registered = self.registered, False
        self._backoff = self._initial_backoff
        out.append(Log("info", "master_reconnected", {"action": "re-registering" if was_registered else "registering now"}))
        return True

    def leader_changed(self, leader: str, epoch: int, out: list[Effect]) -> None:
        """Another master leads: the agent is no longer registered, and retries start over
        from the first backoff (the new leader answers within milliseconds once it serves)."""
        self.registered = False
        self._backoff = self._initial_backoff
        out.append(Log("info", "master_changed", {"leader": leader, "epoch": epoch, "action": "re-registering"}))

    def unregister(self, out: list[Effect]) -> None:
        """The agent leaves (the end of a drain)."""
        if self.agent_id is not None and self.registered:
            out.append(SendToMaster(am.UnregisterAgent(self.agent_id)))
            self.registered = False
