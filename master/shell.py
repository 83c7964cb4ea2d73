"""The master's I/O shell: ZeroMQ in, core, effects out (DESIGN §2). Thin on purpose —
decode, ``handle``, perform — so all behaviour worth testing lives in the core."""

from __future__ import annotations

import logging
import time
from typing import Any, Hashable

from prometheus_client import CollectorRegistry

from tepui.master.offering.accept_salvage import salvage
from tepui.master.core import MasterCore
from tepui.master.durability.epoch import CHECK_SECONDS, Superseded, check_epoch
from tepui.master.durability.registry import NAMESPACES, CorruptRegistry, Persist, decode
from tepui.master.events import (
    AllocateBatch, AllocateNow, Credential, Abort, MasterEffect, MasterEvent, OperatorError, Outbound, PeerUnreachable,
    Received, Send,
)
from tepui.master.http.files_proxy import Located, TasksEndpoint, task_files_request_scope
from tepui.master.http.framework_proxy import FrameworksEndpoint, framework_apis
from tepui.master.http.api import CoreCollector, JsonEndpoint, Redirect, build_site_root
from tepui.master.http.operator_http import QuotaEndpoint, RolesEndpoint, WeightsEndpoint
from tepui.master.http.relay_guard import RelayPolicy
from tepui.master.http.state_view import agent_files, agent_url, find_tasks, render_state, render_state_summary
from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.effects import TimerFired
from tepui.sdk.http_security import GuardedSite, HttpPolicy
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import MasterInbound
from tepui.sdk.shell import TimerBook, TimersAndLogs
from tepui.sdk.store import Store, StoreError
from tepui.sdk.curve import CurveServer
from tepui.sdk.router import RouterEndpoint

log = logging.getLogger("tepui.master")


class MasterShell:
    def __init__(self, reactor: Any, core: MasterCore, bind: str, store: Store | None = None,
                 curve: CurveServer | None = None, heartbeat_seconds: float = 5.0,
                 endpoint: RouterEndpoint | None = None, watch_epoch: bool = True) -> None:
        """``endpoint``: a socket already bound (a master that was a standby keeps the one it
        answered on; its owner routes messages to :meth:`on_message` and :meth:`on_unreachable`).
        ``watch_epoch``: look every second whether another master claimed the registry — not
        for an HA master, whose ZooKeeper session says so first (a successor exists only once
        its session is gone, sdk/leadership.py), and whose reactor must not block on a store
        read while ZooKeeper is unreachable (its writes still check the epoch)."""
        self.reactor = reactor
        self.core = core
        self.store = store
        self.failed = False  # a registry write failed: the master is on its way out
        self.codec: Codec[Any] = Codec(MasterInbound, salvage=salvage)  # an ACCEPT with one bad task: the rest runs
        self.timers = TimerBook(reactor, self._on_timer)
        self.timers_and_logs = TimersAndLogs(self.timers, log)
        self.malformed = 0
        self._msg_id = 0
        # With ``curve`` (keys + allow list) only allow-listed keys get through, and each message
        # comes with the authenticated key's name (identity from the key, never the routing id).
        self.curve = curve
        self.endpoint = endpoint or RouterEndpoint(reactor, bind, self.on_message, self.on_unreachable, curve=curve,
                                                   pass_identity=True, heartbeat_seconds=heartbeat_seconds)
        self._held: list[list[MasterEffect]] | None = None  # effects held while paused (see pause)
        self._allow_list_watch: Any = None
        self._epoch_watch: Any = None
        self._watch_epoch_wanted = watch_epoch
        self.allocation_seconds: dict[str, float] = {}
        self.http_url: str | None = None  # where this master's HTTP API is reached (for /redirect)
        self.registry = CollectorRegistry()
        self.registry.register(CoreCollector(self._metrics))

    def start(self) -> None:
        if self.store is not None:
            try:
                entries = {ns: {key: entry.value for key, entry in self.store.list(ns).items()}
                           for ns in NAMESPACES}
                recovered = decode(entries)
            except (StoreError, CorruptRegistry) as exc:
                self._die(f"cannot read the registry: {exc}")
                return
            if not recovered.empty:
                self._perform(self.core.recover(recovered, self.reactor.seconds()))
            if self._watch_epoch_wanted:
                self._watch_epoch()
        self._perform(self.core.start(self.reactor.seconds()))
        log.info("event=master_started id=%s epoch=%d zmq=%s", self.core.config.master_id, self.core.config.epoch,
                 self.endpoint.address)

    def stop(self) -> None:
        self.timers.cancel_all()
        for watch in (self._allow_list_watch, self._epoch_watch):
            if watch is not None and watch.running:
                watch.stop()
        self.endpoint.close()

    def site(self, policy: HttpPolicy | None = None, relay: RelayPolicy | None = None,
             agent_tls: Any = None) -> GuardedSite:
        """The HTTP API; ``policy`` (tokens, read auth, body limit) is applied before any handler;
        ``relay``: where the framework proxy may connect; ``agent_tls``: how the files proxy
        verifies agents that serve HTTPS (``--agent-ca``)."""
        policy = policy or HttpPolicy()
        return GuardedSite(self.site_root(policy, relay, agent_tls), policy, request_scope=task_files_request_scope)

    def site_root(self, policy: HttpPolicy, relay: RelayPolicy | None = None, agent_tls: Any = None) -> Any:
        """The resources of :meth:`site` (a standby that wins serves them on the site it already had)."""
        allocator = self.core.allocator
        return build_site_root(
            lambda: render_state(self.core, self.reactor.seconds()),
            lambda: {"healthy": True, "leading": True, "id": self.core.config.master_id,
                     "epoch": self.core.config.epoch, "agents": len(self.core.agents)},
            self.registry,
            {
                "weights": WeightsEndpoint(allocator, self.operator_call),
                "quota": QuotaEndpoint(allocator, self.operator_call),
                "roles": RolesEndpoint(allocator, self.operator_call),
                "tasks": TasksEndpoint(self.reactor, self.locate_task, token=policy.token, tls=agent_tls,
                                       agent=lambda agent_id: agent_files(self.core, agent_id)),
                "frameworks": FrameworksEndpoint(self.reactor, lambda: framework_apis(self.core), token=policy.token,
                                                 relay=relay),
                "state-summary": JsonEndpoint(lambda: render_state_summary(self.core, self.reactor.seconds())),
                "redirect": Redirect(lambda: f"{self.http_url}/" if self.http_url else None),
            },
        )

    def locate_task(self, task_id: str, framework_id: str | None) -> list[Located]:
        """Each framework's task with this id, and where its agent serves sandbox files."""
        located = []
        for task in find_tasks(self.core, task_id, framework_id):
            agent = self.core.agents.get(task.agent_id)
            url = agent_url(agent) if agent is not None else None
            located.append(Located(task.framework_id, task.task_id, task.state.value, task.agent_id,
                                   agent.hostname if agent is not None else None, url))
        return located

    def operator_call(self, event: MasterEvent) -> list[OperatorError]:
        """Runs an operator event through the core; returns what it refused (for a 422)."""
        effects = self.core.handle(event, self.reactor.seconds())
        self._perform([e for e in effects if not isinstance(e, OperatorError)])
        return [e for e in effects if isinstance(e, OperatorError)]

    def pause(self) -> None:
        """ZooKeeper is unreachable and this master may be about to lose its leadership: act on
        nothing more (what the core decides meanwhile is held, in order) until :meth:`resume` —
        or until the leadership is lost and the master exits, the held effects with it, none of
        them told to anyone (sdk/leadership.py)."""
        if self._held is None:
            self._held = []
            log.warning("event=master_paused reason=zookeeper_suspended")

    def resume(self) -> None:
        """The same ZooKeeper session is back: perform what was held, in order."""
        held, self._held = self._held, None
        if held is not None:
            log.info("event=master_resumed held_batches=%d", len(held))
            for effects in held:
                self._perform(effects)

    # --- inputs ---------------------------------------------------------------------------

    def watch_allow_list(self, interval: float = 1.0) -> None:
        """Re-reads the allow list whenever its file changes (and on :meth:`reload_allow_list`,
        which SIGHUP calls): ``tepui certs revoke`` takes effect within ``interval`` seconds,
        without a restart; a revoked key's open connection is cut at its next message."""
        from twisted.internet import task

        if self.curve is not None:
            self._allow_list_watch = task.LoopingCall(self.reload_allow_list)
            self._allow_list_watch.clock = self.reactor
            self._allow_list_watch.start(interval, now=False)

    def reload_allow_list(self) -> None:
        if self.curve is not None:
            self.curve.gate.reload()

    def _watch_epoch(self) -> None:
        """Looks every second whether another master has claimed the registry (master/durability/epoch.py):
        a master resumed after a pause stops within a second even if it has nothing to write."""
        from twisted.internet import task

        self._epoch_watch = task.LoopingCall(self._check_epoch)
        self._epoch_watch.clock = self.reactor
        self._epoch_watch.start(CHECK_SECONDS, now=False)

    def _check_epoch(self) -> None:
        if self.store is None or self.failed or self._held is not None:
            return
        try:
            check_epoch(self.store, self.core.config.epoch)
        except Superseded as exc:
            self._die(str(exc), event="master_superseded")
        except StoreError as exc:
            self._die(f"cannot read the registry: {exc}")

    def _credential(self, identity: str | None) -> Credential | None:
        if identity is None or self.curve is None:
            return None
        entry = self.curve.gate.current(identity)
        if entry is None:  # pragma: no cover - the transport drops revoked keys' messages
            return None
        return Credential(entry.name, entry.kind, entry.principal, entry.roles)

    def on_message(self, peer: bytes, payload: bytes, identity: str | None = None) -> None:
        credential = self._credential(identity)
        for env in self.codec.envelopes(payload):  # one, or a batch (tepui.sdk.batch)
            if isinstance(env, ProtocolError):
                # Counted, answered so a developer sees what is wrong, and otherwise dropped:
                # one bad peer (or one bad envelope of a batch) never disturbs anyone else.
                self.malformed += 1
                log.warning("event=malformed_message peer=%s error=%r", peer.hex()[:12], str(env))
                self._send(peer, sm.Error(str(env), env.call_id, env.call_type, env.field))
                continue
            self._perform(self.core.handle(Received(peer, env.body, env.epoch, env.incarnation, identity,
                                                    credential, env.call_id), self.reactor.seconds()))

    def on_unreachable(self, peer: bytes) -> None:
        # Never re-enter the core from inside the perform loop that caused the failed send.
        self.reactor.callLater(0, self._handle, PeerUnreachable(peer))

    def _on_timer(self, key: Hashable) -> None:
        if not isinstance(key, (AllocateBatch, AllocateNow)):
            self._handle(TimerFired(key))
            return
        # The allocation cycle's wall time (allocator + offers encoded and sent), for /metrics:
        # what a large cluster waits on (bench/scale.py reports it).
        started = time.perf_counter()
        self._handle(TimerFired(key))
        took = time.perf_counter() - started
        kind = "batch" if isinstance(key, AllocateBatch) else "incremental"
        self.allocation_seconds[f"allocation_{kind}_last_seconds"] = took
        peak = f"allocation_{kind}_max_seconds"
        self.allocation_seconds[peak] = max(self.allocation_seconds.get(peak, 0.0), took)

    def _handle(self, event: MasterEvent) -> None:
        self._perform(self.core.handle(event, self.reactor.seconds()))

    # --- effects --------------------------------------------------------------------------

    def _perform(self, effects: list[MasterEffect]) -> None:
        if not effects or self.failed:
            return  # a master on its way out (registry failed, superseded) acts on nothing more
        if self._held is not None:
            self._held.append(effects)
            return
        kinds = {type(effect) for effect in effects}
        if Abort in kinds:
            abort = next(effect for effect in effects if isinstance(effect, Abort))
            self._die(abort.reason, event="master_aborted")
            return  # nothing of a batch that ends the master is performed
        if Persist in kinds and not self._persist([effect for effect in effects if isinstance(effect, Persist)]):
            return  # never act on state the registry does not hold
        for effect in effects:
            if type(effect) is Send:
                self._send(effect.peer, effect.body)
            elif type(effect) is Persist:
                continue
            elif not self.timers_and_logs.perform(effect):  # pragma: no cover
                log.error("event=unknown_effect effect=%r", effect)

    def _persist(self, writes: list[Persist]) -> bool:
        """One transaction per batch of effects (batched writes, fsync on commit), which first
        checks that the registry still holds this master's epoch: a superseded master writes
        nothing and exits."""
        if self.store is None or self.failed:
            return not self.failed
        try:
            with self.store.transaction():
                check_epoch(self.store, self.core.config.epoch)
                for write in writes:
                    if write.value is None:
                        self.store.delete(write.ns, write.key)
                    else:
                        self.store.put(write.ns, write.key, write.value)
        except Superseded as exc:
            self._die(str(exc), event="master_superseded")
            return False
        except StoreError as exc:
            self._die(f"a registry write failed: {exc}")
            return False
        return True

    def fail(self, reason: str, event: str) -> None:
        """Stops the master for a reason found outside the core (its leadership is lost)."""
        self._die(reason, event)

    def _die(self, reason: str, event: str = "registry_failed") -> None:
        """Mesos/Borg: a master that cannot persist its registry, or that the core tells to stop
        (``Abort``), exits with status 1 (a supervisor restarts it)."""
        self.failed = True
        log.error("event=%s reason=%r action=exiting", event, reason)
        if self.reactor.running:
            self.reactor.stop()

    def _send(self, peer: bytes, body: Outbound) -> None:
        if not peer:
            return
        self._msg_id += 1
        self.endpoint.send(peer, self.codec.encode(envelope(body, self._msg_id, self.core.config.epoch)))

    def _metrics(self) -> tuple[dict[str, int], dict[str, float]]:
        stats = self.endpoint.stats
        counters = dict(self.core.counters)
        counters.update({
            "malformed_messages": self.malformed,
            "transport_received": stats.received,
            "transport_sent": stats.sent,
            "transport_bad_frames": stats.bad_frames,
            "transport_unreachable": stats.unreachable,
            "transport_overflow_dropped": stats.overflow_dropped,
            "transport_disconnected_peers": stats.disconnected_peers,
            "transport_cut_undelivered": stats.cut_undelivered,
            "transport_refused_revoked": stats.refused_revoked,
            "transport_handshake_failures": self.endpoint.handshake_failures,
        })
        gauges = {
            "agents": float(len(self.core.agents)),
            "unreachable_agents": float(len(self.core.unreachable)),
            "gone_agents": float(len(self.core.gone)),
            "frameworks": float(len(self.core.frameworks)),
            "outstanding_offers": float(len(self.core.offers)),
            "active_tasks": float(sum(len(a.tasks) for a in self.core.agents.values())),
            **self.allocation_seconds,
        }
        return counters, gauges
