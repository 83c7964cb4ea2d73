"""Frameworks subscribing, changing and leaving: SUBSCRIBE, UPDATE_FRAMEWORK, TEARDOWN, a
framework's connection lost, its failover timeout running out, and the heartbeats that let a
driver notice a silent master.

Mesos semantics: a framework re-subscribing under its id (with the same principal) takes its
tasks back, on its new connection; a retried first SUBSCRIBE on the same connection is the same
framework, not a new one; a disconnected framework keeps its tasks for ``failover_timeout``,
then is removed (its tasks killed). Every change is persisted (the registry keeps frameworks).
"""

from __future__ import annotations

import msgspec

from tepui.master.admission.framework_checks import claimed_id_problem, framework_info_problem
from tepui.master.admission.gatekeeper import Gatekeeper
from tepui.master.admission.validation import demand_of, demand_problem
from tepui.master.config import MasterConfig
from tepui.master.members.departures import Departures
from tepui.master.events import (
    CancelTimer, FailoverExpired, Heartbeat, Log, MasterEffect, PeerUnreachable, ScheduleTimer, Send,
)
from tepui.master.offering.pool import Pool
from tepui.master.records import FrameworkRecord
from tepui.master.durability.registry import framework_entry
from tepui.master.members.roster import Roster
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import MasterInfo


class FrameworkCalls:
    def __init__(self, config: MasterConfig, master_info: MasterInfo, roster: Roster, pool: Pool,
                 gatekeeper: Gatekeeper, departures: Departures) -> None:
        self._config = config
        self._master_info = master_info
        self._roster = roster
        self._pool = pool
        self._gatekeeper = gatekeeper
        self._departures = departures

    def on_subscribe(self, peer: bytes, msg: sm.Subscribe, now: float, out: list[MasterEffect]) -> None:
        config, roster = self._config, self._roster
        info = msg.framework_info
        refused = framework_info_problem(info, msg.suppressed_roles)  # before anything is stored
        if refused is None and info.id is not None and info.id not in roster.frameworks:
            refused = claimed_id_problem(info.id, config.master_id, config.durable_registry,
                                         roster.was_removed(info.id))
        if refused is not None:
            out.append(Send(peer, sm.Error(f"SUBSCRIBE refused: {refused[1]}", field=refused[0])))
            return
        problem = demand_problem(msg.demand)
        if problem:
            out.append(Send(peer, sm.Error(f"SUBSCRIBE refused: {problem}")))
            return
        if not self._gatekeeper.may_register(peer, info, "SUBSCRIBE", out):
            return
        demand = demand_of(msg.demand)
        allocator = self._pool.allocator
        known = roster.peers.get(peer)
        if info.id is None and known and known[0] == "framework" and known[1] in roster.frameworks:
            # A retried first SUBSCRIBE on the same connection: the same framework, not a new one.
            info = msgspec.structs.replace(info, id=known[1])
        if info.id and info.id in roster.frameworks:
            framework = roster.frameworks[info.id]
            if framework.info.principal and info.principal != framework.info.principal:
                out.append(Send(peer, sm.Error(
                    f"framework {info.id} is registered with principal {framework.info.principal!r}; "
                    f"re-subscribing as {info.principal!r} is refused"
                )))
                return
            roster.connect_framework(framework, peer)
            framework.info = info
            allocator.add_framework(info.id, info.roles, msg.suppressed_roles, demand)
            out.append(CancelTimer(FailoverExpired(info.id)))
            out.append(Log("info", "framework_resubscribed", {"framework_id": info.id, "name": info.name}))
        else:
            framework_id = info.id or roster.next_id("F")
            if info.id is None:
                info = msgspec.structs.replace(info, id=framework_id)
            framework = FrameworkRecord(framework_id, info, peer, now)
            roster.add_framework(framework)
            roster.connect_framework(framework, peer)
            allocator.add_framework(framework_id, info.roles, msg.suppressed_roles, demand)
            out.append(Log("info", "framework_subscribed", {"framework_id": framework_id, "name": info.name}))
        out.append(framework_entry(framework.info))
        out.append(Send(peer, sm.Subscribed(framework.framework_id, config.heartbeat_interval, self._master_info)))
        self._pool.request_allocation()

    def on_update_framework(self, peer: bytes, msg: sm.UpdateFramework, now: float, out: list[MasterEffect]) -> None:
        refused = framework_info_problem(msg.framework_info, msg.suppressed_roles)
        if refused is not None:
            out.append(Send(peer, sm.Error(f"UPDATE_FRAMEWORK refused: {refused[1]}", field=refused[0])))
            return
        framework = self._roster.framework_for(peer, msg.framework_info.id or "", out,
                                               field="$.body.framework_info.id")
        if framework is None:
            return
        if framework.info.principal and msg.framework_info.principal != framework.info.principal:
            out.append(Send(peer, sm.Error("UPDATE_FRAMEWORK may not change the principal")))
            return
        if not self._gatekeeper.may_register(peer, msg.framework_info, "UPDATE_FRAMEWORK", out):
            return
        framework.info = msg.framework_info
        self._pool.allocator.update_framework(framework.framework_id, framework.info.roles, msg.suppressed_roles)
        out.append(framework_entry(framework.info))
        self._pool.request_allocation()

    def on_teardown(self, peer: bytes, msg: sm.Teardown, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.framework_for(peer, msg.framework_id, out)
        if framework is not None and self._gatekeeper.may_teardown(peer, framework.info.principal, framework, out):
            self._departures.remove_framework(framework, "teardown requested", now, out)

    def on_peer_unreachable(self, event: PeerUnreachable, now: float, out: list[MasterEffect]) -> None:
        known = self._roster.peers.get(event.peer)
        if not known or known[0] != "framework":
            return  # agents are judged by pings, not by one failed send
        framework = self._roster.frameworks.get(known[1])
        if framework is None or not framework.active:
            return
        self._departures.disconnect_framework(framework, now, out)

    def on_failover_expired(self, key: FailoverExpired, now: float, out: list[MasterEffect]) -> None:
        framework = self._roster.frameworks.get(key.framework_id)
        if framework is not None and not framework.active:
            self._departures.remove_framework(framework, "failover timeout expired", now, out)

    def on_heartbeat_timer(self, key: Heartbeat, now: float, out: list[MasterEffect]) -> None:
        for framework in self._roster.connected_frameworks():
            out.append(Send(framework.peer or b"", sm.Heartbeat()))
        out.append(ScheduleTimer(now + self._config.heartbeat_interval, Heartbeat()))
