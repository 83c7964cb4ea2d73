"""What a framework author subclasses and drives: :class:`Scheduler` and :class:`SchedulerDriver`.

The names follow the Mesos/pymesos drivers so that porting a framework is mostly renaming.
The driver owns the connection: it subscribes, re-subscribes with backoff when the master goes
silent (no heartbeat for five intervals) or at once when the connection comes back after a loss
(a restarted master has forgotten it), reconciles implicitly after every re-subscription, drops
(and counts, :attr:`SchedulerDriver.stale_epoch_dropped`) messages from an older master epoch,
and acknowledges status updates after the callback returns (implicit acknowledgements, the
default) — so an update is acknowledged only once the framework has seen it.

Every call goes out with a ``call_id`` (the caller's, or the envelope's id): each call method
returns it, and an ERROR the call causes comes back to :meth:`Scheduler.error` as a
:class:`CallError` carrying it, the call's type and the field at fault. An ERROR is never fatal:
the driver goes on, and so should the scheduler (log it; a DECLINE that crossed a RESCIND is
refused as a matter of course).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import msgspec

from twisted.internet import defer

from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import FrameworkInbound
from tepui.sdk.protocol.values import (
    DemandShape,
    ExecutorInfo,
    Filters,
    FrameworkInfo,
    KillPolicy,
    MasterInfo,
    Offer,
    ReconcileTask,
    RoleExplanation,
    TaskGroupInfo,
    TaskInfo,
    TaskStatus,
)
from tepui.sdk.resources import Resources
from tepui.sdk.config import DEFAULT_MASTER, load_client_config, resolve_master
from tepui.sdk.keys import ClientKeys
from tepui.sdk.dealer import DealerEndpoint
from tepui.sdk.transport import tcp_address
from tepui.sdk.zookeeper import is_zk, parse_zk_url

if TYPE_CHECKING:
    from tepui.sdk.master_follower import MasterTarget

# The failover timeout for long-running frameworks (services, schedulers of long jobs): a crashed
# framework's tasks keep running a week for its next instance (FrameworkInfo's own default, 0,
# is Mesos': tear the framework down as soon as it disconnects).
LONG_RUNNING_FAILOVER_TIMEOUT = 7 * 24 * 3600.0

log = logging.getLogger("tepui.sdk.scheduler")

MISSED_HEARTBEATS = 5
MAX_BACKOFF = 15.0
# A KILL is sent again after 5 s, doubling to 60 s, until the task's terminal update arrives:
# Mesos leaves retrying kills to every framework (a KILL lost on the way to the master is never
# seen by it); the master itself repeats KILL_TASK to the agent every ping interval.
KILL_RETRY = 5.0
MAX_KILL_RETRY = 60.0


class CallError(str):
    """The text of a master's ERROR, with the call it answers: ``call_id`` (as the call method
    returned it), ``call_type`` (``"DECLINE"``) and ``field`` (``"$.body.offer_ids[0]"``), each
    None when the master did not say. A ``str``, so that ``error(driver, message)`` callbacks
    written before these fields keep working."""

    call_id: str | None
    call_type: str | None
    field: str | None

    def __new__(cls, error: sm.Error) -> CallError:
        self = super().__new__(cls, error.message)
        self.call_id, self.call_type, self.field = error.call_id, error.call_type, error.field
        return self


class Scheduler:
    """Framework callbacks; override what you need. Each receives the driver first."""

    def subscribed(self, driver: SchedulerDriver, framework_id: str, master_info: MasterInfo) -> None:
        """Subscribed (or re-subscribed after a failover) with ``framework_id``."""

    def offers(self, driver: SchedulerDriver, offers: list[Offer]) -> None:
        """New offers. Accept (launch) or decline each one; an unanswered offer holds resources."""

    def rescinded(self, driver: SchedulerDriver, offer_id: str) -> None:
        """The offer is no longer valid (timed out, agent lost); using it will fail."""

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        """A task changed state; acknowledged when this returns (implicit acknowledgements)."""

    def framework_message(self, driver: SchedulerDriver, agent_id: str, executor_id: str, data: bytes) -> None:
        """A message from one of this framework's executors."""

    def agent_lost(self, driver: SchedulerDriver, agent_id: str) -> None:
        """The agent was removed; its tasks get their own status updates."""

    def executor_lost(self, driver: SchedulerDriver, executor_id: str, agent_id: str, status: int | None) -> None:
        """A custom executor ended."""

    def error(self, driver: SchedulerDriver, message: CallError) -> None:
        """The master refused a call of this framework (or part of one); ``message`` says what
        and what to do next, and names the call (:class:`CallError`). Not fatal: log it and go
        on — a DECLINE or ACCEPT that crossed a RESCIND is refused in the normal course."""
        log.warning("event=call_refused call_type=%s call_id=%s field=%s message=%r", message.call_type,
                    message.call_id, message.field, str(message))

    def disconnected(self, driver: SchedulerDriver) -> None:
        """The master went silent; the driver is re-subscribing."""

    def explanation(self, driver: SchedulerDriver, roles: list[RoleExplanation]) -> None:
        """The answer to :meth:`SchedulerDriver.explain`: per role, why offers do (not) come."""


class SchedulerDriver:
    def __init__(
        self,
        scheduler: Scheduler,
        framework: FrameworkInfo,
        master: str | None = None,
        *,
        reactor: Any,
        implicit_acknowledgements: bool = True,
        demand: Iterable[tuple[Resources, int] | Resources] | None = None,
        keys: ClientKeys | None = None,
        insecure: bool = False,
    ) -> None:
        """``demand`` (optional) is declared with the subscription itself, so that not even the
        first offers go where none of the shapes fits; see :meth:`declare_demand`.

        ``keys`` (CURVE: this client's key pair and the master's public key): without them the
        driver reads the client configuration (``$TEPUI_CONFIG``, else
        ``~/.config/tepui/config.yaml``, written by ``tepui up``), which also supplies the master
        address when ``master`` is None; no configuration means a plain connection, which only a
        master started with ``--insecure`` accepts. ``insecure`` skips the configuration.

        ``master`` may be ``zk://h1:p1,h2:p2/path`` (HA masters): the driver then follows the
        serving leader, subscribes once one serves, and re-subscribes at once when ZooKeeper
        names another (see :func:`tepui.sdk.master_follower.master_key` for the key used)."""
        self.scheduler = scheduler
        self._demand = _shapes(demand)
        self.framework = framework
        if keys is None and not insecure:
            config = load_client_config()
            keys = config.keys
            master = resolve_master(master, config)
        self.keys = keys
        master = master or DEFAULT_MASTER
        # zk://...: the serving master is followed (tepui.sdk.master_follower) from start().
        self.master_address = str(parse_zk_url(master)) if is_zk(master) else tcp_address(master, 5050)
        self._follower: Any = None
        self.reactor = reactor
        self.implicit_acknowledgements = implicit_acknowledgements
        self.codec: Codec[Any] = Codec(FrameworkInbound)
        self.connected = False
        self.master_info: MasterInfo | None = None
        self._endpoint: DealerEndpoint | None = None
        self._epoch = 0
        self.stale_epoch_dropped = 0  # messages from a superseded master, dropped unseen by the scheduler
        self._msg_id = 0
        self._heartbeat_interval = 15.0
        self._last_event = 0.0
        self._backoff = 1.0
        self._subscribe_call: Any = None
        self._watch_call: Any = None
        self._stopped = False
        self._stop_result: defer.Deferred[None] | None = None
        self._ever_subscribed = False
        self._kills: dict[str, tuple[sm.Kill, Any]] = {}  # task id → the KILL and its repetition

    @property
    def framework_id(self) -> str | None:
        return self.framework.id

    @property
    def handshake_problem(self) -> str | None:
        """Why the master refused our connection's handshake (``key_refused``,
        ``mechanism_mismatch``, ...), if it did: the socket still "sends" (trap 6)."""
        return self._endpoint.handshakes.last_failure if self._endpoint is not None else None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Connects and subscribes; callbacks start arriving once the reactor runs. With a
        ``zk://`` master: connects to ZooKeeper (blocking until a server answers; raises
        ``ZkUnavailable`` when none does) and subscribes once a leader serves."""
        following = is_zk(self.master_address)
        self._endpoint = DealerEndpoint(self.reactor, None if following else self.master_address, self._on_message,
                                        on_reconnect=self._reconnected, curve=self.keys)
        self._stopped = False
        if following:
            from tepui.sdk.master_follower import follow_master

            self._follower = follow_master(self.reactor, self.master_address, self.keys, self._master_changed)
        else:
            self._subscribe()

    def stop(self, failover: bool = False) -> defer.Deferred[None]:
        """Tears the framework down (its tasks are killed) unless ``failover``, in which case
        the master keeps its tasks for ``failover_timeout`` awaiting a new instance."""
        if self._stop_result is not None:  # idempotent: one teardown, one close
            return self._stop_result
        for call in (self._subscribe_call, self._watch_call):
            if call is not None and call.active():
                call.cancel()
        for task_id in list(self._kills):
            self._kill_done(task_id)
        done: defer.Deferred[None] = defer.Deferred()
        self._stop_result = done

        def teardown() -> None:
            # On the next turn, so that whatever the current callback is part of completes
            # first: stopping from inside status_update still acknowledges that update.
            if not failover and self.framework.id is not None:
                self._send(sm.Teardown(self.framework.id))
            self._stopped = True
            self.connected = False
            self.reactor.callLater(0.05, close)

        def close() -> None:
            if self._follower is not None:
                self._follower.close()
                self._follower = None
            if self._endpoint is not None:
                self._endpoint.close()  # LINGER lets the queued teardown leave first
            done.callback(None)

        self.reactor.callLater(0, teardown)
        return done

    def run(self) -> None:
        """Starts the driver and runs the reactor until :meth:`stop_and_exit` (or the reactor
        stops for another reason)."""
        self.reactor.callWhenRunning(self.start)
        self.reactor.run()

    def stop_and_exit(self, failover: bool = False) -> None:
        """Stops the driver, then the reactor: the usual end of a command-line framework."""
        if self._stop_result is None:
            self.stop(failover).addBoth(lambda _: self.reactor.stop() if self.reactor.running else None)

    # --- subscription ---------------------------------------------------------------------

    def _subscribe(self) -> None:
        if self._stopped:
            return
        self._send(sm.Subscribe(self.framework, demand=self._demand))
        delay = self._backoff * (0.5 + random.random() / 2)
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        self._subscribe_call = self.reactor.callLater(delay, self._subscribe)

    def _reconnected(self) -> None:
        """The connection to the master came back after a loss: a master that restarted has
        forgotten this connection, so re-subscribe now rather than after the heartbeat
        silence (a blip costs one harmless re-subscription)."""
        if self._stopped or not self._ever_subscribed:
            return
        log.info("event=resubscribing reason=connection_restored")
        self._resubscribe_now()

    def _resubscribe_now(self) -> None:
        """Subscribes again at once, the backoff started over (``disconnected`` first, if it was)."""
        if self.connected:
            self.connected = False
            self.scheduler.disconnected(self)
        if self._subscribe_call is not None and self._subscribe_call.active():
            self._subscribe_call.cancel()
        self._backoff = 1.0
        self._subscribe()

    def _master_changed(self, target: MasterTarget) -> None:
        """ZooKeeper names a new serving master (or the first one): move the connection to it
        and (re-)subscribe now, not after the heartbeat silence — the old leader's connection
        may stay quiet for many seconds after it died. What was queued for it is lost with the
        old socket (:meth:`DealerEndpoint.retarget`); the re-subscription and the implicit
        reconciliation that follows it recover what matters."""
        if self._stopped or self._endpoint is None:
            return
        log.info("event=master_changed leader=%s epoch=%d endpoint=%s", target.info.id, target.info.epoch,
                 target.connect)
        self._endpoint.retarget(target.connect, target.server_key)
        self._resubscribe_now()

    def _watch(self) -> None:
        """Mesos HA guide: a scheduler that misses several heartbeats re-subscribes."""
        if self._stopped:
            return
        silent = self.reactor.seconds() - self._last_event
        if self.connected and silent > MISSED_HEARTBEATS * self._heartbeat_interval:
            log.warning("event=master_silent seconds=%.1f", silent)
            self.connected = False
            self._backoff = 1.0
            self.scheduler.disconnected(self)
            self._subscribe()
        self._watch_call = self.reactor.callLater(self._heartbeat_interval, self._watch)

    # --- inbound --------------------------------------------------------------------------

    def _on_message(self, payload: bytes) -> None:
        for env in self.codec.envelopes(payload):  # one, or a batch (tepui.sdk.batch)
            if self._stop_result is not None:
                return  # stopping: nothing new is delivered to the scheduler
            if isinstance(env, ProtocolError):
                log.warning("event=malformed_message error=%r", str(env))
                continue
            self._on_envelope(env)

    @property
    def master_epoch(self) -> int:
        """The newest master epoch seen (0 before the first message)."""
        return self._epoch

    def _on_envelope(self, env: Any) -> None:
        """Epoch fencing (tepui.master.durability.epoch): every master claims a larger epoch than all before
        it before serving anyone, so an older epoch is a superseded master's — a paused one, or
        its bytes queued across a failover — and its offers, updates or errors never reach the
        scheduler. A newer epoch is adopted from any message, not only SUBSCRIBED: it proves a
        newer master exists (Mesos drivers follow the leader the detector reports)."""
        if env.epoch < self._epoch:
            self.stale_epoch_dropped += 1
            log.info("event=stale_epoch_dropped epoch=%d current=%d type=%s dropped=%d", env.epoch, self._epoch,
                     type(env.body).__name__, self.stale_epoch_dropped)
            return
        self._epoch = env.epoch
        body = env.body
        if not isinstance(body, sm.Error):
            # An ERROR is no proof of a subscription: a restarted master answers every call of
            # a framework it does not know with one, and the silence check must still fire.
            self._last_event = self.reactor.seconds()
        if isinstance(body, sm.Subscribed):
            self._on_subscribed(body)
        elif not self.connected and not isinstance(body, sm.Error):
            return  # not subscribed (yet/any more): nothing else is meant for us
        elif isinstance(body, sm.Offers):
            self.scheduler.offers(self, list(body.offers))
        elif isinstance(body, sm.Update):
            if body.status.state.is_terminal:
                self._kill_done(body.status.task_id)
            self.scheduler.status_update(self, body.status)
            if self.implicit_acknowledgements and not self._stopped:
                self.acknowledge(body.status)
        elif isinstance(body, sm.Rescind):
            self.scheduler.rescinded(self, body.offer_id)
        elif isinstance(body, sm.FrameworkMessage):
            self.scheduler.framework_message(self, body.agent_id, body.executor_id, body.data)
        elif isinstance(body, sm.Failure):
            if body.executor_id is None:
                self.scheduler.agent_lost(self, body.agent_id or "")
            else:
                self.scheduler.executor_lost(self, body.executor_id, body.agent_id or "", body.status)
        elif isinstance(body, sm.Error):
            self.scheduler.error(self, CallError(body))
        elif isinstance(body, sm.Explanation):
            self.scheduler.explanation(self, list(body.roles))

    def _on_subscribed(self, body: sm.Subscribed) -> None:
        if self._subscribe_call is not None and self._subscribe_call.active():
            self._subscribe_call.cancel()
        self.framework = msgspec.structs.replace(self.framework, id=body.framework_id)
        self.master_info = body.master_info
        self._heartbeat_interval = body.heartbeat_interval_seconds
        self._backoff = 1.0
        was_connected, self.connected = self.connected, True
        if self._watch_call is None or not self._watch_call.active():
            self._watch_call = self.reactor.callLater(self._heartbeat_interval, self._watch)
        if not was_connected:
            self.scheduler.subscribed(self, body.framework_id, body.master_info)
            if self._ever_subscribed and not self._stopped:
                # Re-subscribed (master failover, lost link): learn what happened meanwhile.
                # Implicit reconciliation; the scheduler may add explicit reconciliation of the
                # tasks it tracks (Mesos' reconciliation guide).
                self._send(sm.Reconcile(body.framework_id))
            self._ever_subscribed = True

    # --- calls ----------------------------------------------------------------------------

    def _send(self, body: Any, call_id: str | None = None) -> str:
        """Sends ``body`` with ``call_id`` (by default the envelope's id, as a string) and returns it."""
        if self._endpoint is None:
            raise RuntimeError("the driver is not started; call start() (or run()) first")
        self._msg_id += 1
        call_id = call_id if call_id is not None else str(self._msg_id)
        if self._stopped:
            log.debug("event=call_after_stop_dropped type=%s", type(body).__name__)
            return call_id
        self._endpoint.send(self.codec.encode(envelope(body, self._msg_id, self._epoch, call_id=call_id)))
        return call_id

    def _fid(self) -> str:
        if self.framework.id is None:
            raise RuntimeError("not subscribed yet: wait for the subscribed() callback")
        return self.framework.id

    def launch(self, offer_ids: str | Sequence[str], tasks: Iterable[TaskInfo], filters: Filters | None = None, *,
               call_id: str | None = None) -> str:
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        return self.accept(ids, [sm.Launch(list(tasks))], filters, call_id=call_id)

    def launch_group(self, offer_ids: str | Sequence[str], tasks: Sequence[TaskInfo], executor_id: str | None = None,
                     filters: Filters | None = None, *, call_id: str | None = None) -> str:
        """Launches ``tasks`` together on one agent (a pod): all or none start, they share a volume
        (``$TEPUI_SHARED``, linked as ``./shared``), and one failing kills the others."""
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        executor = ExecutorInfo(executor_id=executor_id or f"group-{tasks[0].task_id}", type="DEFAULT",
                                framework_id=self._fid())
        return self.accept(ids, [sm.LaunchGroup(executor, TaskGroupInfo(list(tasks)))], filters, call_id=call_id)

    # Each call below returns the call id it was sent with (``call_id``, else the driver's own),
    # which an ERROR it causes carries back (``CallError.call_id``).

    def accept(self, offer_ids: Sequence[str], operations: Sequence[Any], filters: Filters | None = None, *,
               call_id: str | None = None) -> str:
        return self._send(sm.Accept(self._fid(), list(offer_ids), list(operations), filters), call_id)

    def decline(self, offer_ids: str | Sequence[str], filters: Filters | None = None, *,
                call_id: str | None = None) -> str:
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        return self._send(sm.Decline(self._fid(), ids, filters), call_id)

    def revive(self, roles: Sequence[str] = (), *, call_id: str | None = None) -> str:
        return self._send(sm.Revive(self._fid(), list(roles)), call_id)

    def suppress(self, roles: Sequence[str] = (), *, call_id: str | None = None) -> str:
        return self._send(sm.Suppress(self._fid(), list(roles)), call_id)

    def kill(self, task_id: str, agent_id: str | None = None, grace_period: float | None = None, *,
             call_id: str | None = None) -> str:
        """Kills the task; the KILL is sent again (5 s, doubling to 60 s) until a terminal
        update for the task arrives, so a lost one does not leave it running (each repetition
        with ``call_id`` when one was given, else with an id of its own)."""
        policy = KillPolicy(grace_period) if grace_period is not None else None
        call = sm.Kill(self._fid(), task_id, agent_id, policy)
        sent = self._send(call, call_id)
        self._kill_later(call, KILL_RETRY, call_id)
        return sent

    def _kill_later(self, call: sm.Kill, delay: float, call_id: str | None) -> None:
        self._kill_done(call.task_id)
        self._kills[call.task_id] = (call, self.reactor.callLater(delay, self._kill_again, call.task_id, delay,
                                                                  call_id))

    def _kill_again(self, task_id: str, delay: float, call_id: str | None) -> None:
        call, _ = self._kills.pop(task_id)
        if self._stopped:
            return
        if self.connected:
            log.info("event=kill_retried task_id=%s", task_id)
            self._send(call, call_id)
        self._kill_later(call, min(delay * 2, MAX_KILL_RETRY), call_id)

    def _kill_done(self, task_id: str) -> None:
        entry = self._kills.pop(task_id, None)
        if entry is not None and entry[1].active():
            entry[1].cancel()

    def acknowledge(self, status: TaskStatus, *, call_id: str | None = None) -> str | None:
        """None (nothing sent) for an update that takes no acknowledgement (no uuid: the master's own)."""
        if status.uuid is not None and status.agent_id is not None:
            return self._send(sm.Acknowledge(self._fid(), status.agent_id, status.task_id, status.uuid), call_id)
        return None

    def reconcile(self, tasks: Iterable[tuple[str, str | None]] = (), *, call_id: str | None = None) -> str:
        """Explicit with ``(task_id, agent_id)`` pairs; implicit (all tasks) when empty."""
        return self._send(sm.Reconcile(self._fid(), [ReconcileTask(t, a) for t, a in tasks]), call_id)

    def send_framework_message(self, agent_id: str, executor_id: str, data: bytes, *,
                               call_id: str | None = None) -> str:
        return self._send(sm.Message(self._fid(), agent_id, executor_id, data), call_id)

    def shutdown_executor(self, agent_id: str, executor_id: str, *, call_id: str | None = None) -> str:
        return self._send(sm.Shutdown(self._fid(), executor_id, agent_id), call_id)

    def declare_demand(self, shapes: Iterable[tuple[Resources, int] | Resources] | None, role: str | None = None,
                       *, call_id: str | None = None) -> str:
        """Tells the allocator what this framework waits to launch: offers then come only from
        agents where one shape fits, and none at all for an empty list. ``None`` returns to
        plain Mesos behaviour. Each item is ``Resources`` or ``(Resources, count)``."""
        self._demand = _shapes(shapes, role)  # a re-subscription re-declares it
        return self._send(sm.DeclareDemand(self._fid(), self._demand), call_id)

    def explain(self, *, call_id: str | None = None) -> str:
        """Asks the master why offers do (not) come; answered through ``Scheduler.explanation``."""
        return self._send(sm.Explain(self._fid()), call_id)

    def update_framework(self, framework: FrameworkInfo, suppressed_roles: Sequence[str] = (), *,
                         call_id: str | None = None) -> str:
        self.framework = msgspec.structs.replace(framework, id=self._fid())
        return self._send(sm.UpdateFramework(self.framework, list(suppressed_roles)), call_id)


def _shapes(shapes: Iterable[tuple[Resources, int] | Resources] | None, role: str | None = None) -> list[DemandShape] | None:
    if shapes is None:
        return None
    demand = []
    for shape in shapes:
        resources, count = shape if isinstance(shape, tuple) else (shape, 1)
        demand.append(DemandShape(resources=resources.to_wire(), count=count, role=role))
    return demand
