"""The master's pure core: agents, frameworks, offers and tasks as a state machine.

``MasterCore.handle(event, now)`` is the only way to change state; it returns the effects the
shell performs (send, schedule a timer, log, persist). No sockets, files, threads or clocks
here, so a 75-second failure scenario runs on a fake clock in milliseconds (DESIGN §2).

Mesos semantics followed (and cited where they matter): the master records a task before
forwarding it, so a launch runs at most once per task id; offers count as allocated until used,
declined, rescinded or timed out; unused resources of an accepted offer are declined with the
accept's filters; status updates flow agent → master → framework and acknowledgements flow back.

How it is built: a thin composition, on the model of :class:`tepui.offers.allocator.Allocator`
(pure, a narrow public API, its own state). Two kinds of parts, none of which holds the core:

- **Components own state** and answer for it: the :class:`~tepui.master.members.roster.Roster` (agents,
  frameworks, peers, ids), the :class:`~tepui.master.offering.offer_book.OfferBook` (offers and their
  timeouts), the :class:`~tepui.master.failures.partitions.PartitionTracker` (pings, removals,
  unreachable and gone agents), the :class:`~tepui.master.durability.durable.Recovery` (agents expected
  back after a failover), the :class:`~tepui.master.admission.gatekeeper.Gatekeeper` (identity,
  ACLs, rate limits), :class:`~tepui.master.failures.task_audit.TaskAudits`,
  :class:`~tepui.master.tasks.pending_acks.PendingAcks`, and the allocator behind the
  :class:`~tepui.master.offering.pool.Pool`.
- **Flows own no state**: each handles one family of events with the components it is given,
  explicitly, in its constructor — :mod:`~tepui.master.members.agent_membership`,
  :mod:`~tepui.master.failures.readoption`, :mod:`~tepui.master.failures.failure_detection`,
  :mod:`~tepui.master.members.framework_calls`, :mod:`~tepui.master.tasks.task_calls`,
  :mod:`~tepui.master.offering.offer_cycle`, :class:`~tepui.master.durability.durable.OperatorCalls`, with the
  steps they share in :mod:`~tepui.master.members.departures`, :mod:`~tepui.master.tasks.task_ends` and
  :mod:`~tepui.master.failures.audit_flow`.

The core routes through three explicit tables — event type, message type, timer key type →
handler — so where a message goes is read here, not guessed from a method name. Its
vocabulary (events, effects, timer keys) is :mod:`tepui.master.events`. The read-only
properties below show the components' state to the shell, the HTTP views and the tests.
"""

from __future__ import annotations

import collections
import random
from typing import Any, Callable, TypeVar, cast

from tepui.master.offering.accept_salvage import PartialAccept
from tepui.master.admission.gatekeeper import Gatekeeper, LabelCounter
from tepui.master.members.agent_membership import AgentMembership
from tepui.master.failures.audit_flow import AuditFlow
from tepui.master.config import MasterConfig
from tepui.master.members.departures import Departures
from tepui.master.durability.durable import OperatorCalls, Recovery, recover_registry
from tepui.master.events import (
    AgentGone, AllocateBatch, AllocateNow, FailoverExpired, Heartbeat, Log, MasterEffect, MasterEvent,
    OfferTimeout, PeerUnreachable, PingAgents, Received, RemovalSlot, ReplaceAcls, ReregisterWindow,
    ScheduleTimer, TimerFired, UpdateQuota, UpdateWeights,
)
from tepui.master.failures.failure_detection import FailureDetector
from tepui.master.members.framework_calls import FrameworkCalls
from tepui.master.offering.offer_book import OfferBook
from tepui.master.offering.offer_cycle import OfferCycle
from tepui.master.failures.partitions import PartitionTracker
from tepui.master.tasks.pending_acks import PendingAcks
from tepui.master.offering.pool import Pool
from tepui.master.failures.readoption import Readoption
from tepui.master.records import AgentRecord, FrameworkRecord, OfferRecord, UnreachableAgent
from tepui.master.admission.refusals import correlate
from tepui.master.durability.registry import Recovered
from tepui.master.members.roster import Roster
from tepui.master.failures.task_audit import TaskAudits
from tepui.master.tasks.task_calls import TaskCalls
from tepui.master.tasks.task_ends import TaskEnds
from tepui.offers.allocator import Allocator
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import AgentInfo, MasterInfo

__all__ = ["MasterCore", "MasterConfig", "ALLOCATE_NOW", "ALLOCATE_BATCH", "PING", "HEARTBEAT",
           "REREGISTER_WINDOW"]

# The fixed timer keys under their former names (tests, harnesses and the shell use them).
ALLOCATE_NOW = AllocateNow()
ALLOCATE_BATCH = AllocateBatch()
PING = PingAgents()
HEARTBEAT = Heartbeat()
REREGISTER_WINDOW = ReregisterWindow()

Out = list[MasterEffect]
Handler = Callable[[Any, float, Out], None]  # (event, message or timer key; now; out)
M = TypeVar("M")


def _from_peer(handler: Callable[[bytes, M, float, Out], None]) -> Callable[[Received, float, Out], None]:
    """A message handler takes the sender and the message (the envelope's other fields are the
    core's business: identity, fencing, rate limits, correlation)."""
    return lambda event, now, out: handler(event.peer, cast(M, event.body), now, out)  # the table's key is its type


class MasterCore:
    def __init__(self, config: MasterConfig, allocator: Allocator | None = None) -> None:
        self.config = config
        self.counters: collections.Counter[str] = collections.Counter()
        self.allocator = allocator or Allocator(rng=random.Random(config.allocation_seed))
        self.master_info = MasterInfo(
            id=config.master_id,
            address=config.address,
            hostname=config.hostname,
            version=config.version,
            epoch=config.epoch,
            http_port=config.http_port,
        )
        self.started_at = 0.0
        counters = self.counters

        # --- components: each owns its state ---
        self.roster = roster = Roster(config.master_id, config.max_completed_frameworks)
        self.pool = pool = Pool(self.allocator, counters)
        self.offer_book = offer_book = OfferBook(roster, pool, config.offer_timeout)
        self.partitions = partitions = PartitionTracker(config, counters)
        self.recovery = recovery = Recovery()
        self.gatekeeper = gatekeeper = Gatekeeper(config.acls, config.framework_rate_limit, counters, roster.peers,
                                                  roster.frameworks)
        self.audits = audits = TaskAudits(counters)  # anti-entropy with each agent (master/failures/task_audit.py)
        self.pending_acks = pending_acks = PendingAcks()  # the update each task waits to have acknowledged

        # --- flows: no state, the components they use given explicitly ---
        tasks = TaskEnds(roster, pool, audits)
        departures = Departures(roster, offer_book, tasks, pool, audits, pending_acks)
        audit_flow = AuditFlow(roster, audits)
        self._detector = detector = FailureDetector(config, counters, roster, partitions, recovery, departures,
                                                    tasks, audits, audit_flow)
        readoption = Readoption(counters, roster, pool, tasks, audits, audit_flow)
        self._membership = membership = AgentMembership(self.master_info, counters, roster, pool, partitions,
                                                        recovery, departures, detector, readoption)
        frameworks = FrameworkCalls(config, self.master_info, roster, pool, gatekeeper, departures)
        task_calls = TaskCalls(counters, roster, tasks, pending_acks, audits, partitions, recovery)
        offer_cycle = OfferCycle(config, counters, roster, offer_book, pool, gatekeeper, audits)
        operator = OperatorCalls(pool)

        # --- dispatch tables ---
        self._messages: dict[type, Callable[[Received, float, Out], None]] = {
            am.RegisterAgent: lambda e, now, out: membership.on_register(
                e.peer, cast(am.RegisterAgent, e.body), e.incarnation, now, out),
            am.ReregisterAgent: lambda e, now, out: membership.on_reregister(
                e.peer, cast(am.ReregisterAgent, e.body), e.incarnation, now, out),
            am.UnregisterAgent: _from_peer(membership.on_unregister),
            am.Pong: _from_peer(detector.on_pong),
            am.TaskAudit: _from_peer(readoption.on_task_audit),
            am.StatusUpdate: _from_peer(task_calls.on_status_update),
            am.ExecutorTerminated: _from_peer(task_calls.on_executor_terminated),
            am.ExecutorToFramework: _from_peer(task_calls.on_executor_to_framework),
            sm.Subscribe: _from_peer(frameworks.on_subscribe),
            sm.UpdateFramework: _from_peer(frameworks.on_update_framework),
            sm.Teardown: _from_peer(frameworks.on_teardown),
            sm.Acknowledge: _from_peer(task_calls.on_acknowledge),
            sm.Kill: _from_peer(task_calls.on_kill),
            sm.Message: _from_peer(task_calls.on_message),
            sm.Shutdown: _from_peer(task_calls.on_shutdown),
            sm.Reconcile: _from_peer(task_calls.on_reconcile),
            sm.Accept: _from_peer(offer_cycle.on_accept),
            PartialAccept: _from_peer(offer_cycle.on_accept),  # what could be read of an ACCEPT
            sm.Decline: _from_peer(offer_cycle.on_decline),
            sm.Revive: _from_peer(offer_cycle.on_revive),
            sm.Suppress: _from_peer(offer_cycle.on_suppress),
            sm.DeclareDemand: _from_peer(offer_cycle.on_declare_demand),
            sm.Explain: _from_peer(offer_cycle.on_explain),
        }
        self._timers: dict[type, Handler] = {
            AllocateNow: offer_cycle.on_allocate_now,
            AllocateBatch: offer_cycle.on_allocate_batch,
            PingAgents: detector.on_ping_timer,
            Heartbeat: frameworks.on_heartbeat_timer,
            ReregisterWindow: detector.on_reregister_window,
            RemovalSlot: detector.on_removal_slot,
            AgentGone: detector.on_agent_gone,
            FailoverExpired: frameworks.on_failover_expired,
            OfferTimeout: offer_book.timed_out,
        }
        self._events: dict[type, Handler] = {
            Received: self._on_received,
            TimerFired: self._on_timer,
            PeerUnreachable: frameworks.on_peer_unreachable,
            UpdateWeights: operator.on_update_weights,
            UpdateQuota: operator.on_update_quota,
            ReplaceAcls: lambda event, now, out: gatekeeper.replace_acls(event, out),
        }

    # --- entry points ---------------------------------------------------------------------

    def recover(self, recovered: Recovered, now: float) -> list[MasterEffect]:
        """Before ``start``: what the registry kept (master/durability/durable.py)."""
        return recover_registry(recovered, now, self.config, self.roster, self.pool, self.partitions, self.recovery)

    def start(self, now: float) -> list[MasterEffect]:
        self.started_at = now
        return [
            ScheduleTimer(now + self.config.allocation_interval, ALLOCATE_BATCH),
            ScheduleTimer(now + self.ping_interval, PING),
            ScheduleTimer(now + self.config.heartbeat_interval, HEARTBEAT),
        ]

    def handle(self, event: MasterEvent, now: float) -> list[MasterEffect]:
        handler = self._events.get(type(event))
        if handler is None:
            raise TypeError(f"unknown event {event!r}")
        out: list[MasterEffect] = []
        handler(event, now, out)
        if self.pool.take_request():
            out.append(ScheduleTimer(now, ALLOCATE_NOW))
        return out

    def _on_received(self, event: Received, now: float, out: Out) -> None:
        name = type(event.body).__name__
        handler = self._messages.get(type(event.body))
        self.counters["messages_" + name] += 1  # in /metrics: keep the names
        checked = self.gatekeeper.identity_checked(event, out)  # identity from the key (admission/identity.py)
        if checked is not None and not (self._membership.older_incarnation(checked, out)
                                        or self.gatekeeper.rate_limited(checked, now, out)):
            if handler is None:  # pragma: no cover - every inbound type has a handler
                out.append(Log("warning", "unhandled_message", {"type": name}))
            else:
                handler(checked, now, out)
                self.gatekeeper.bind_identity(checked)
        correlate(event, out)  # every ERROR names the call it answers (master/admission/refusals.py)

    def _on_timer(self, event: TimerFired, now: float, out: Out) -> None:
        handler = self._timers.get(type(event.key))
        if handler is None:
            raise TypeError(f"unknown timer key {event.key!r}")
        handler(event.key, now, out)

    # --- the components' state, read only ---------------------------------------------------

    @property
    def agents(self) -> dict[str, AgentRecord]:
        return self.roster.agents

    @property
    def frameworks(self) -> dict[str, FrameworkRecord]:
        return self.roster.frameworks

    @property
    def completed_frameworks(self) -> collections.deque[FrameworkRecord]:
        return self.roster.completed_frameworks

    @property
    def peers(self) -> dict[bytes, tuple[str, str]]:
        return self.roster.peers

    @property
    def offers(self) -> dict[str, OfferRecord]:
        return self.offer_book.offers

    @property
    def unreachable(self) -> dict[str, UnreachableAgent]:
        return self.partitions.unreachable

    @property
    def gone(self) -> dict[str, float]:
        return self.partitions.gone

    @property
    def recovered_agents(self) -> dict[str, AgentInfo]:
        return self.recovery.recovered_agents

    @property
    def ping_interval(self) -> float:
        return self._detector.ping_interval

    @property
    def rate_limited_by(self) -> LabelCounter:
        return self.gatekeeper.rate_limited_by

    @property
    def unauthorized_by(self) -> LabelCounter:
        return self.gatekeeper.unauthorized_by
