"""The master's pure core: agents, frameworks, offers and tasks as a state machine.

``MasterCore.handle(event, now)`` is the only way to change state; it returns the effects the
shell performs (send, schedule a timer, log). No sockets, files, threads or clocks here, so a
75-second failure scenario runs on a fake clock in milliseconds (DESIGN §2).

Mesos semantics followed (and cited where they matter): the master records a task before
forwarding it, so a launch runs at most once per task id; offers count as allocated until used,
declined, rescinded or timed out; unused resources of an accepted offer are declined with the
accept's filters; status updates flow agent → master → framework and acknowledgements flow back.
Failure detection, unreachable and gone agents, and reconciliation live in
:mod:`tepui.master.partitions`; offers in :mod:`tepui.master.offer_cycle`; the registry's
recovery in :mod:`tepui.master.durable`.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from tepui.master.admission.acls import PERMISSIVE, Acls
from tepui.master.admission.gatekeeper import Gatekeeper, LabelCounter, ReplaceAcls
from tepui.master.events import PeerUnreachable, Received, Send, UpdateQuota, UpdateWeights
from tepui.master.durable import REREGISTER_WINDOW, DurableState
from tepui.master.offer_cycle import OfferCycle
from tepui.master.partitions import GONE_TIMER, REMOVAL_SLOT, Partitions, RemovalRate
from tepui.master.admission.rate_limits import DEFAULT_RATE_LIMIT, RateLimit
from tepui.master.refusals import agent_missing, correlate, executor_agent, shown
from tepui.master.pending_acks import PendingAcks
from tepui.master.task_audit import TaskAudits
from tepui.master.records import AgentRecord, FrameworkRecord, OfferRecord, TaskRecord, kept_status
from tepui.master.registry import AGENTS, FRAMEWORKS, Persist, agent_entry, framework_entry
from tepui.master.admission.peer_checks import agent_refused
from tepui.master.admission.framework_checks import claimed_id_problem, framework_info_problem
from tepui.master.admission.validation import demand_of, demand_problem, grace_problem, task_resources
from tepui.offers.allocator import Allocator
from tepui.sdk.effects import CancelTimer, Log, ScheduleTimer, TimerFired
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.values import (
    AgentInfo,
    FrameworkInfo,
    MasterInfo,
    TaskReason,
    TaskSource,
    TaskState,
    TaskStatus,
)
from tepui.sdk.resources import EMPTY, Resources

Effect = Any

ALLOCATE_NOW = ("allocate", "now")
ALLOCATE_BATCH = ("allocate", "batch")
PING = ("ping",)
HEARTBEAT = ("heartbeat",)


@dataclass(frozen=True)
class MasterConfig:
    master_id: str
    hostname: str = "localhost"
    address: str = "127.0.0.1:5050"
    http_port: int | None = 5080
    version: str = "0.1.0"
    epoch: int = 1
    allocation_interval: float = 1.0
    heartbeat_interval: float = 15.0
    # Silent for 2 s × 5 = 10 s → unreachable (Mesos: 15 s × 5 = 75 s); see master/partitions.py.
    agent_ping_interval: float = 2.0
    max_agent_ping_timeouts: int = 5
    # The interval grows with the cluster so that pings stay under this rate (Nomad's
    # max_heartbeats_per_second): 2 s up to 4,000 agents, 5 s at 10,000. None: never grows.
    max_agent_pings_per_second: float | None = 2000.0
    offer_timeout: float | None = 60.0
    max_completed_frameworks: int = 50
    agent_reregister_timeout: float = 600.0  # Mesos: 10 min after a master failover
    agent_removal_rate: RemovalRate | None = None  # Mesos --agent_removal_rate_limit: unlimited
    agent_gone_timeout: float = 86400.0  # unreachable for a day → gone, refused under its id
    recovery_agent_removal_limit: float = 100.0  # percent missing after a failover before exiting (Mesos)
    max_gone_agents: int = 10000  # gone agents the registry remembers (oldest forgotten first)
    allow_host_volumes: bool = False  # container volumes with host paths outside the sandbox (issue 6)
    acls: Acls = PERMISSIVE  # --acls FILE; see master/admission/acls.py and docs/security.md
    framework_rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT  # per principal; None: unlimited
    # Seeds the allocator's shuffle of the agents of every cycle (Mesos shuffles them): the same
    # seed and the same events give the same offers (tests on a fake clock, simulations).
    allocation_seed: int = 0
    # The registry is kept on disk (--work-dir): every framework a previous master admitted and
    # did not remove is recovered, so a SUBSCRIBE with an unknown id is refused (see
    # master/admission/framework_checks.py, claimed_id_problem).
    durable_registry: bool = False


class MasterCore(OfferCycle, DurableState, Partitions):
    def __init__(self, config: MasterConfig, allocator: Allocator | None = None) -> None:
        self.config = config
        self.allocator = allocator or Allocator(rng=random.Random(config.allocation_seed))
        self.agents: dict[str, AgentRecord] = {}
        self.frameworks: dict[str, FrameworkRecord] = {}
        self.completed_frameworks: collections.deque[FrameworkRecord] = collections.deque(
            maxlen=config.max_completed_frameworks
        )
        self.offers: dict[str, OfferRecord] = {}
        self.peers: dict[bytes, tuple[str, str]] = {}  # peer → ("agent"|"framework", id)
        self.started_at = 0.0
        self.counters: collections.Counter[str] = collections.Counter()
        self._seq = collections.Counter[str]()
        self._ping_seq = 0
        self._allocation_pending = False
        self.recovered_agents: dict[str, AgentInfo] = {}
        self._incarnation: str | None = None  # of the agent message being handled
        self.audits = TaskAudits(self.counters)  # anti-entropy with each agent (master/task_audit.py)
        self.pending_acks = PendingAcks()  # the update each task waits to have acknowledged
        self._init_partitions()
        self.gatekeeper = Gatekeeper(config.acls, config.framework_rate_limit, self.counters, self.peers,
                                     self.frameworks)
        self.master_info = MasterInfo(
            id=config.master_id,
            address=config.address,
            hostname=config.hostname,
            version=config.version,
            epoch=config.epoch,
            http_port=config.http_port,
        )

    # --- entry points ---------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        self.started_at = now
        return [
            ScheduleTimer(now + self.config.allocation_interval, ALLOCATE_BATCH),
            ScheduleTimer(now + self.ping_interval, PING),
            ScheduleTimer(now + self.config.heartbeat_interval, HEARTBEAT),
        ]

    def handle(self, event: Any, now: float) -> list[Effect]:
        out: list[Effect] = []
        if isinstance(event, Received):
            self._on_received(event, now, out)
            correlate(event, out)  # every ERROR names the call it answers (master/refusals.py)
        elif isinstance(event, TimerFired):
            self._on_timer(event.key, now, out)
        elif isinstance(event, PeerUnreachable):
            self._on_peer_unreachable(event.peer, now, out)
        elif isinstance(event, UpdateWeights):
            self._on_update_weights(event, out)
        elif isinstance(event, UpdateQuota):
            self._on_update_quota(event, out)
        elif isinstance(event, ReplaceAcls):
            self.gatekeeper.replace_acls(event, out)
        else:
            raise TypeError(f"unknown event {event!r}")
        if self._allocation_pending:
            self._allocation_pending = False
            out.append(ScheduleTimer(now, ALLOCATE_NOW))
        return out

    def _on_received(self, event: Received, now: float, out: list[Effect]) -> None:
        handler: Callable[[bytes, Any, float, list[Effect]], None] | None = getattr(
            self, "_on_" + type(event.body).__name__, None
        )
        self.counters["messages_" + type(event.body).__name__] += 1
        checked = self.gatekeeper.identity_checked(event, out)  # identity from the key (admission/identity.py)
        if checked is None:
            return
        event = checked
        if self._from_an_older_incarnation(event, out) or self.gatekeeper.rate_limited(event, now, out):
            return
        if handler is None:  # pragma: no cover - every inbound type has a handler
            out.append(Log("warning", "unhandled_message", {"type": type(event.body).__name__}))
        else:
            handler(event.peer, event.body, now, out)
            self.gatekeeper.bind_identity(event)

    @property
    def rate_limited_by(self) -> LabelCounter:
        return self.gatekeeper.rate_limited_by

    @property
    def unauthorized_by(self) -> LabelCounter:
        return self.gatekeeper.unauthorized_by

    def _next_id(self, kind: str) -> str:
        self._seq[kind] += 1
        return f"{self.config.master_id}-{kind}{self._seq[kind]:04d}"

    def _recover(self, agent_id: str, framework_id: str, role: str, resources: Resources,
                 refuse_seconds: float | None = None, now: float = 0.0) -> None:
        """Returns resources to the allocator; a mismatch (a double recover) is a bug, counted
        in ``/metrics`` as ``recover_mismatch`` rather than silently minting resources."""
        if not self.allocator.recover(agent_id, framework_id, role, resources, refuse_seconds, now):
            self.counters["recover_mismatch"] += 1

    def _request_allocation(self) -> None:
        self._allocation_pending = True

    # --- agents ---------------------------------------------------------------------------

    def _on_RegisterAgent(self, peer: bytes, msg: am.RegisterAgent, now: float, out: list[Effect]) -> None:
        if agent_refused(peer, msg.agent_info, False, self.counters, out):
            return
        known = self.peers.get(peer)
        if known and known[0] == "agent" and known[1] in self.agents:
            # A retried registration from the same connection: answer again, change nothing.
            agent = self.agents[known[1]]
        else:
            if msg.previous_agent_id:
                self._forget_rebooted(msg.previous_agent_id, now, out)
            agent_id = self._next_id("S")
            agent = self._admit_agent(agent_id, peer, msg.agent_info, msg.version, now)
            agent.reported = agent.total
            agent.incarnation = self._incarnation
            out.append(agent_entry(agent))
            out.append(Log("info", "agent_registered", {"agent_id": agent_id, "hostname": agent.hostname}))
        out.append(
            Send(peer, am.AgentRegistered(agent.agent_id, self.master_info, self.ping_interval))
        )

    def _admit_agent(self, agent_id: str, peer: bytes, info: Any, version: str, now: float) -> AgentRecord:
        total = Resources.from_wire(info.resources)
        agent = AgentRecord(
            agent_id=agent_id,
            peer=peer,
            hostname=info.hostname,
            total=total,
            attributes=dict(info.attributes),
            version=version,
            registered_at=now,
            last_pong=now,
            http_port=info.http_port,
            address=info.address,
            http_tls=info.http_tls,
            task_user=info.task_user,
        )
        self.agents[agent_id] = agent
        self.peers[peer] = ("agent", agent_id)
        self.allocator.add_agent(agent_id, total)
        self._request_allocation()
        return agent

    def _on_ReregisterAgent(self, peer: bytes, msg: am.ReregisterAgent, now: float, out: list[Effect]) -> None:
        if agent_refused(peer, msg.agent_info, True, self.counters, out):
            return
        agent_id = msg.agent_info.id or ""
        if agent_id in self.gone:
            self._refuse_gone(peer, agent_id, now, out)
            return
        agent = self.agents.get(agent_id)
        was_unreachable = False
        if agent is None:
            # Unknown id: the master restarted (or marked the agent unreachable). The agent is
            # the source of truth for its tasks, so admit it under its id and rebuild its tasks.
            # The registry's copy of its resources wins: it carries reservations and volumes.
            info = msg.agent_info
            kept, was_unreachable = self._kept_agent_info(agent_id, now, out)
            if kept is not None:
                info = msgspec.structs.replace(info, resources=self._readmitted_resources(kept, msg.agent_info))
            agent = self._admit_agent(agent_id, peer, info, msg.version, now)
            agent.incarnation = self._incarnation
            agent.reported = Resources.from_wire(msg.agent_info.resources) if kept is None or \
                not Resources.from_wire(kept.resources).has_reservations else None
            out.append(agent_entry(agent))
            out.append(Log("info", "agent_readmitted", {"agent_id": agent_id, "tasks": len(msg.tasks)}))
        else:
            if agent.peer != peer:
                self.peers.pop(agent.peer, None)
                agent.peer = peer
                self.peers[peer] = ("agent", agent_id)
            self._heard_from(agent, now, out)
            agent.incarnation = self._incarnation or agent.incarnation
            agent.http_port, agent.address = msg.agent_info.http_port, msg.agent_info.address
            agent.http_tls = msg.agent_info.http_tls
            agent.task_user = msg.agent_info.task_user
            self._grow_agent(agent, Resources.from_wire(msg.agent_info.resources), out)
            self.allocator.activate_agent(agent_id)
            out.append(Log("info", "agent_reregistered", {"agent_id": agent_id}))
        reported = self._adopt_reports(agent, msg.tasks, msg.frameworks, now, out)
        self._reconcile_unreported(agent, reported, was_unreachable, now, out)
        out.append(
            Send(peer, am.AgentReregistered(agent_id, self.master_info, self.ping_interval))
        )

    def _placeholder_framework(self, framework_id: str, frameworks: list[FrameworkInfo], now: float) -> FrameworkRecord:
        """A framework known only from an agent's report waits, inactive, for its re-subscribe."""
        info = next((f for f in frameworks if f.id == framework_id), None)
        if info is None:
            info = FrameworkInfo(user="", name="", id=framework_id)
        record = FrameworkRecord(framework_id, info, None, now, active=False, disconnected_at=now)
        self.frameworks[framework_id] = record
        self.allocator.add_framework(framework_id, info.roles)
        self.allocator.deactivate_framework(framework_id)
        return record

    def _on_UnregisterAgent(self, peer: bytes, msg: am.UnregisterAgent, now: float, out: list[Effect]) -> None:
        agent = self._agent_by_peer(peer)
        if agent is not None and agent.agent_id == msg.agent_id:
            self._remove_agent(agent, TaskState.GONE, TaskReason.AGENT_REMOVED, "agent unregistered", now, out,
                               level="info")
            out.append(Persist(AGENTS, agent.agent_id, None))

    def _agent_by_peer(self, peer: bytes) -> AgentRecord | None:
        known = self.peers.get(peer)
        if known and known[0] == "agent":
            return self.agents.get(known[1])
        return None

    def _remove_agent(
        self, agent: AgentRecord, state: TaskState, reason: TaskReason, message: str, now: float, out: list[Effect],
        level: str = "warning",
    ) -> None:
        """Mesos: PARTITION_AWARE frameworks get the precise state; others get TASK_LOST."""
        for offer_id in list(agent.offers):
            self._rescind(offer_id, now, out, recover=False)
        for task in list(agent.tasks.values()):
            framework = self.frameworks.get(task.framework_id)
            task_state = state if framework is not None and framework.partition_aware else TaskState.LOST
            self._master_update(task, task_state, reason, message, now, out)
        for framework in self.frameworks.values():
            if framework.active and framework.peer is not None:
                out.append(Send(framework.peer, sm.Failure(agent_id=agent.agent_id)))
        self.allocator.remove_agent(agent.agent_id)
        self.audits.forget_agent(agent.agent_id)
        self.pending_acks.forget_agent(agent.agent_id)
        self.agents.pop(agent.agent_id, None)
        self.peers.pop(agent.peer, None)
        out.append(Log(level, "agent_removed", {"agent_id": agent.agent_id, "reason": message}))

    # --- frameworks -----------------------------------------------------------------------

    def _on_Subscribe(self, peer: bytes, msg: sm.Subscribe, now: float, out: list[Effect]) -> None:
        info = msg.framework_info
        refused = framework_info_problem(info, msg.suppressed_roles)  # before anything is stored
        if refused is None and info.id is not None and info.id not in self.frameworks:
            refused = claimed_id_problem(info.id, self.config.master_id, self.config.durable_registry,
                                         any(f.framework_id == info.id for f in self.completed_frameworks))
        if refused is not None:
            out.append(Send(peer, sm.Error(f"SUBSCRIBE refused: {refused[1]}", field=refused[0])))
            return
        problem = demand_problem(msg.demand)
        if problem:
            out.append(Send(peer, sm.Error(f"SUBSCRIBE refused: {problem}")))
            return
        if not self.gatekeeper.may_register(peer, info, "SUBSCRIBE", out):
            return
        demand = demand_of(msg.demand)
        known = self.peers.get(peer)
        if info.id is None and known and known[0] == "framework" and known[1] in self.frameworks:
            # A retried first SUBSCRIBE on the same connection: the same framework, not a new one.
            info = msgspec.structs.replace(info, id=known[1])
        if info.id and info.id in self.frameworks:
            framework = self.frameworks[info.id]
            if framework.info.principal and info.principal != framework.info.principal:
                out.append(Send(peer, sm.Error(
                    f"framework {info.id} is registered with principal {framework.info.principal!r}; "
                    f"re-subscribing as {info.principal!r} is refused"
                )))
                return
            if framework.peer is not None and framework.peer != peer:
                self.peers.pop(framework.peer, None)
            framework.peer, framework.active, framework.disconnected_at = peer, True, None
            framework.info = info
            self.allocator.add_framework(info.id, info.roles, msg.suppressed_roles, demand)
            out.append(CancelTimer(("failover", info.id)))
            out.append(Log("info", "framework_resubscribed", {"framework_id": info.id, "name": info.name}))
        else:
            framework_id = info.id or self._next_id("F")
            if info.id is None:
                info = msgspec.structs.replace(info, id=framework_id)
            framework = FrameworkRecord(framework_id, info, peer, now)
            self.frameworks[framework_id] = framework
            self.allocator.add_framework(framework_id, info.roles, msg.suppressed_roles, demand)
            out.append(Log("info", "framework_subscribed", {"framework_id": framework_id, "name": info.name}))
        self.peers[peer] = ("framework", framework.framework_id)
        out.append(framework_entry(framework.info))
        out.append(Send(peer, sm.Subscribed(framework.framework_id, self.config.heartbeat_interval, self.master_info)))
        self._request_allocation()

    def _framework_for(self, peer: bytes, framework_id: str, out: list[Effect],
                       field: str = "$.body.framework_id") -> FrameworkRecord | None:
        """The caller must be the connection the framework subscribed on."""
        framework = self.frameworks.get(framework_id)
        if framework is None:
            out.append(Send(peer, sm.Error(f"framework {shown(framework_id)} is not subscribed; send SUBSCRIBE first",
                                           field=field)))
            return None
        if framework.peer != peer:
            out.append(Send(peer, sm.Error(
                f"framework {shown(framework_id)} is subscribed on another connection; re-subscribe to take over"
            )))
            return None
        return framework

    def _on_Teardown(self, peer: bytes, msg: sm.Teardown, now: float, out: list[Effect]) -> None:
        framework = self._framework_for(peer, msg.framework_id, out)
        if framework is not None and self.gatekeeper.may_teardown(peer, framework.info.principal, framework, out):
            self._remove_framework(framework, "teardown requested", now, out)

    def _remove_framework(self, framework: FrameworkRecord, why: str, now: float, out: list[Effect]) -> None:
        for offer_id in list(framework.offers):
            self._rescind(offer_id, now, out, notify=False)
        agents_to_tell = {task.agent_id for task in framework.tasks.values()}
        for task in list(framework.tasks.values()):
            self._finish_task(task, TaskState.KILLED, now)
        for agent_id in sorted(agents_to_tell):
            agent = self.agents.get(agent_id)
            if agent is not None:
                out.append(Send(agent.peer, am.ShutdownFramework(framework.framework_id)))
        self.allocator.remove_framework(framework.framework_id)
        self.pending_acks.forget_framework(framework.framework_id)
        self.frameworks.pop(framework.framework_id, None)
        if framework.peer is not None:
            self.peers.pop(framework.peer, None)
        framework.active = False
        framework.peer = None
        self.completed_frameworks.append(framework)
        out.append(Persist(FRAMEWORKS, framework.framework_id, None))
        out.append(CancelTimer(("failover", framework.framework_id)))
        out.append(Log("info", "framework_removed", {"framework_id": framework.framework_id, "reason": why}))

    def _on_peer_unreachable(self, peer: bytes, now: float, out: list[Effect]) -> None:
        known = self.peers.get(peer)
        if not known or known[0] != "framework":
            return  # agents are judged by pings, not by one failed send
        framework = self.frameworks.get(known[1])
        if framework is None or not framework.active:
            return
        self._disconnect_framework(framework, now, out)

    def _disconnect_framework(self, framework: FrameworkRecord, now: float, out: list[Effect]) -> None:
        """Mesos: offers never survive a disconnect; tasks wait ``failover_timeout``."""
        framework.active = False
        framework.disconnected_at = now
        self.peers.pop(framework.peer or b"", None)
        framework.peer = None
        for offer_id in list(framework.offers):
            self._rescind(offer_id, now, out, notify=False)
        self.allocator.deactivate_framework(framework.framework_id)
        out.append(ScheduleTimer(now + framework.info.failover_timeout, ("failover", framework.framework_id)))
        out.append(Log("warning", "framework_disconnected", {
            "framework_id": framework.framework_id, "failover_timeout": framework.info.failover_timeout,
        }))

    def _on_UpdateFramework(self, peer: bytes, msg: sm.UpdateFramework, now: float, out: list[Effect]) -> None:
        refused = framework_info_problem(msg.framework_info, msg.suppressed_roles)
        if refused is not None:
            out.append(Send(peer, sm.Error(f"UPDATE_FRAMEWORK refused: {refused[1]}", field=refused[0])))
            return
        framework = self._framework_for(peer, msg.framework_info.id or "", out, field="$.body.framework_info.id")
        if framework is None:
            return
        if framework.info.principal and msg.framework_info.principal != framework.info.principal:
            out.append(Send(peer, sm.Error("UPDATE_FRAMEWORK may not change the principal")))
            return
        if not self.gatekeeper.may_register(peer, msg.framework_info, "UPDATE_FRAMEWORK", out):
            return
        framework.info = msg.framework_info
        self.allocator.update_framework(framework.framework_id, framework.info.roles, msg.suppressed_roles)
        out.append(framework_entry(framework.info))
        self._request_allocation()

    # --- tasks ----------------------------------------------------------------------------

    def _update_to(
        self, framework: FrameworkRecord, task_id: str, agent_id: str | None, state: TaskState,
        reason: TaskReason, message: str, now: float,
    ) -> Effect:
        """A master-generated update (no uuid: nothing for the framework to acknowledge)."""
        status = TaskStatus(task_id=task_id, state=state, message=message, source=TaskSource.MASTER,
                            reason=reason, agent_id=agent_id, timestamp=now)
        return Send(framework.peer or b"", sm.Update(status))

    def _master_update(self, task: TaskRecord, state: TaskState, reason: TaskReason, message: str,
                       now: float, out: list[Effect]) -> None:
        framework = self.frameworks.get(task.framework_id)
        if state.is_terminal:
            self._finish_task(task, state, now)
        else:
            task.state = state
        if framework is not None and framework.peer is not None:
            out.append(self._update_to(framework, task.task_id, task.agent_id, state, reason, message, now))

    def _finish_task(self, task: TaskRecord, state: TaskState, now: float) -> None:
        """Mesos: a terminal task's resources return to the pool at once."""
        if task.state != state and (not task.history or task.history[-1][0] != state.value):
            task.record(state, now)
        task.state = state
        self.audits.task_ended((task.framework_id, task.task_id))
        framework = self.frameworks.get(task.framework_id)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            if agent.tasks.pop((task.framework_id, task.task_id), None) is not None:
                self._recover(agent.agent_id, task.framework_id, task.role, task.resources)
                self._request_allocation()
        if framework is not None and framework.tasks.pop(task.task_id, None) is not None:
            framework.completed.append(task)

    def _on_StatusUpdate(self, peer: bytes, msg: am.StatusUpdate, now: float, out: list[Effect]) -> None:
        agent = self._agent_by_peer(peer)
        if agent is None:
            # Mesos: dropped and counted. An agent the master marked unreachable is pinged no
            # more, so it notices and re-registers, then sends the update again.
            self.counters["invalid_status_updates"] += 1
            out.append(Log("warning", "update_from_unknown_agent", {
                "task_id": msg.status.task_id, "agent_id": msg.status.agent_id, "action": "dropped"}))
            return
        status = msg.status
        framework = self.frameworks.get(msg.framework_id)
        task = agent.tasks.get((msg.framework_id, status.task_id))
        if task is not None:
            task.status = kept_status(status)
            if task.state != status.state:
                task.record(status.state, status.timestamp if status.timestamp is not None else now)
            if status.state.is_terminal:
                self._finish_task(task, status.state, now)
            else:
                task.state = status.state
        self.counters["status_updates"] += 1
        if status.uuid:
            self.pending_acks.forwarded(agent.agent_id, (msg.framework_id, status.task_id), status.uuid)
        if framework is not None and framework.peer is not None:
            out.append(Send(framework.peer, sm.Update(status)))

    def _on_Acknowledge(self, peer: bytes, msg: sm.Acknowledge, now: float, out: list[Effect]) -> None:
        framework = self._framework_for(peer, msg.framework_id, out)
        if framework is None:
            return
        agent = self.agents.get(msg.agent_id)
        task = (framework.framework_id, msg.task_id)
        if agent is not None and msg.uuid and self.pending_acks.acknowledged(agent.agent_id, task, msg.uuid):
            out.append(Send(agent.peer, am.StatusUpdateAck(framework.framework_id, msg.task_id, msg.uuid)))
        elif agent is not None and msg.uuid:
            # Not passed on: safe, because an agent sends an unacknowledged update again and that
            # copy is recorded here (master/pending_acks.py).
            self.counters["acknowledgements_refused"] += 1
            out.append(Send(peer, sm.Error(
                f"ACKNOWLEDGE of no pending update: task {shown(msg.task_id)} on agent {agent.agent_id} has no "
                f"update with uuid {msg.uuid[:32].hex()}{'...' if len(msg.uuid) > 32 else ''} waiting for an "
                "acknowledgement (never sent, or an earlier update of the task); nothing to do — after a master "
                "failover the agent sends its update again: acknowledge that copy",
                field="$.body.uuid")))
        elif agent is not None:
            out.append(Send(peer, sm.Error("ACKNOWLEDGE names no status update: its uuid is empty; copy the "
                                           "update's uuid", field="$.body.uuid")))
        elif msg.agent_id in self.unreachable or msg.agent_id in self.recovered_agents:
            self.counters["acknowledgements_deferred"] += 1  # the agent sends the update again when back
        else:
            out.append(Send(peer, sm.Error(f"ACKNOWLEDGE: {agent_missing(self, msg.agent_id)}; it holds no "
                                           "update to acknowledge", field="$.body.agent_id")))

    def _on_Kill(self, peer: bytes, msg: sm.Kill, now: float, out: list[Effect]) -> None:
        problem = grace_problem("", msg.kill_policy)
        if problem:
            out.append(Send(peer, sm.Error(f"KILL refused: {problem}",
                                           field="$.body.kill_policy.grace_period_seconds")))
            return
        framework = self._framework_for(peer, msg.framework_id, out)
        if framework is None:
            return
        task = framework.tasks.get(msg.task_id)
        agent = self.agents.get(task.agent_id) if task is not None else None
        if task is None:
            ended = next((t for t in reversed(framework.completed) if t.task_id == msg.task_id), None)
            if ended is not None:
                # Answered as reconciliation answers it: its end. "Unknown" made a framework
                # relaunch work that had finished (a near miss in a chaos run).
                out.append(self._update_to(framework, msg.task_id, ended.agent_id, ended.state,
                                           TaskReason.RECONCILIATION, f"task {msg.task_id!r} has already ended", now))
                return
            if (msg.agent_id in self.recovered_agents) if msg.agent_id else bool(self.recovered_agents):
                # After a failover its agent may still re-register with it (as reconciliation
                # does, no answer: the driver sends the kill again). "Unknown" here had a chaos
                # run's framework relaunch a task that then ran: its work ran twice.
                self.counters["kills_deferred"] += 1
                return
        elif agent is None:
            # Held, on an agent that is unreachable: its state, not "unknown" (which says it never
            # ran); the driver repeats the kill, which reaches the agent when it is back.
            out.append(self._update_to(framework, msg.task_id, task.agent_id, task.state, TaskReason.RECONCILIATION,
                                       f"cannot kill task {msg.task_id!r} now: its agent is unreachable", now))
            return
        if task is None or agent is None:
            state = TaskState.UNKNOWN if framework.partition_aware else TaskState.LOST
            out.append(self._update_to(framework, msg.task_id, msg.agent_id, state, TaskReason.TASK_UNKNOWN,
                                       f"cannot kill task {msg.task_id!r}: the master does not know it", now))
            return
        out.append(Send(agent.peer, am.KillTask(framework.framework_id, msg.task_id, msg.kill_policy)))
        self.audits.kill_sent((framework.framework_id, msg.task_id), agent.agent_id, msg.kill_policy, now)

    def _on_Message(self, peer: bytes, msg: sm.Message, now: float, out: list[Effect]) -> None:
        framework = self._framework_for(peer, msg.framework_id, out)
        agent = executor_agent(self, peer, framework, msg, out)
        if framework is not None and agent is not None:
            out.append(Send(agent.peer, am.FrameworkToExecutor(framework.framework_id, msg.executor_id, msg.data)))

    def _on_Shutdown(self, peer: bytes, msg: sm.Shutdown, now: float, out: list[Effect]) -> None:
        framework = self._framework_for(peer, msg.framework_id, out)
        agent = executor_agent(self, peer, framework, msg, out)
        if framework is not None and agent is not None:
            out.append(Send(agent.peer, am.ShutdownExecutor(framework.framework_id, msg.executor_id)))

    def _on_ExecutorTerminated(self, peer: bytes, msg: am.ExecutorTerminated, now: float, out: list[Effect]) -> None:
        agent = self._agent_by_peer(peer)
        framework = self.frameworks.get(msg.framework_id)
        if agent is not None and framework is not None and framework.peer is not None:
            out.append(Send(framework.peer, sm.Failure(agent.agent_id, msg.executor_id, msg.status)))

    def _on_ExecutorToFramework(self, peer: bytes, msg: am.ExecutorToFramework, now: float, out: list[Effect]) -> None:
        framework = self.frameworks.get(msg.framework_id)
        if self._agent_by_peer(peer) is not None and framework is not None and framework.peer is not None:
            out.append(Send(framework.peer, sm.FrameworkMessage(msg.agent_id, msg.executor_id, msg.data)))

    # --- timers ---------------------------------------------------------------------------

    def _on_timer(self, key: Any, now: float, out: list[Effect]) -> None:
        if key == ALLOCATE_NOW:
            self._allocate(now, out, incremental=True)
        elif key == ALLOCATE_BATCH:
            self._allocate(now, out)
            out.append(ScheduleTimer(now + self.config.allocation_interval, ALLOCATE_BATCH))
        elif key == PING:
            self._ping_agents(now, out)
            out.append(ScheduleTimer(now + self.ping_interval, PING))
        elif key == HEARTBEAT:
            for framework in self.frameworks.values():
                if framework.active and framework.peer is not None:
                    out.append(Send(framework.peer, sm.Heartbeat()))
            out.append(ScheduleTimer(now + self.config.heartbeat_interval, HEARTBEAT))
        elif key == REREGISTER_WINDOW:
            self._reregister_window_closed(now, out)
        elif key == REMOVAL_SLOT:
            self._remove_due(now, out)
        elif key[0] == GONE_TIMER:
            self._agent_gone_timer(key[1], now, out)
        elif key[0] == "failover":
            framework = self.frameworks.get(key[1])
            if framework is not None and not framework.active:
                self._remove_framework(framework, "failover timeout expired", now, out)
        elif key[0] == "offer_timeout":
            if key[1] in self.offers:
                out.append(Log("info", "offer_timed_out", {"offer_id": key[1]}))
                self._rescind(key[1], now, out)
