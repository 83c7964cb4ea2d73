"""What a custom executor subclasses and drives: :class:`Executor` and :class:`ExecutorDriver`.

The executor side of the Mesos v1 executor API (names follow pymesos, so porting an executor is
mostly renaming). An agent starts a custom executor as a process with its coordinates in the
environment; the driver connects a DEALER to the agent's ROUTER over ``ipc://`` and speaks the
messages of :mod:`tepui.sdk.protocol.executor`.

Mesos semantics kept here:

* Subscription: SUBSCRIBE carries the secret the agent put in the executor's environment
  (``TEPUI_EXECUTOR_SECRET``; the agent refuses a SUBSCRIBE without it). The driver takes it
  out of ``os.environ`` when it reads it, so the tasks an executor starts do not inherit it,
  and never logs it.
* Subscription: SUBSCRIBE is re-sent with capped, jittered backoff until SUBSCRIBED arrives.
  A re-subscription carries every status update the agent has not ACKNOWLEDGED yet and every
  launched task none of whose updates has been acknowledged yet (``Call.Subscribe``'s
  ``unacknowledged_updates`` / ``unacknowledged_tasks``), so nothing the executor said is lost
  when the agent restarts.
* Status updates: the driver fills ``timestamp``, a fresh ``uuid`` and ``source=SOURCE_EXECUTOR``
  and keeps the update until the agent ACKNOWLEDGES it (the agent's status update manager then
  owns delivery to the framework). The executor never retries an update on its own; resending
  happens only in a re-subscription (an update made while not subscribed waits for it). An
  executor may not send ``TASK_STAGING``.
* Liveness: while subscribed the driver sends HEARTBEAT every ``heartbeat_interval`` (default
  1 s, ``TEPUI_EXECUTOR_HEARTBEAT_INTERVAL``); the agent answers each with a HEARTBEAT event. Silence for three intervals means the agent is gone (the
  driver re-subscribes); a message carrying a different agent *incarnation* than the one that
  subscribed us means the agent restarted (the driver re-subscribes at once).
* Recovery timeout: an executor that has not been subscribed for ``recovery_timeout`` (default
  15 min, Mesos ``--recovery_timeout``; the agent checkpoints its executors and a restarted one
  takes them back) calls :meth:`Executor.shutdown` and stops, as Mesos
  executors without checkpointing exit when their agent is gone.
* SHUTDOWN: the driver calls :meth:`Executor.shutdown` (kill your tasks there), waits until
  every launched task has a terminal update and every update is acknowledged, at most
  ``shutdown_grace_period`` (Mesos ``MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD``), then stops the
  driver and the reactor — :meth:`ExecutorDriver.run` returns and the process exits.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.protocol import executor as em
from tepui.sdk.protocol.envelope import ExecutorInbound
from tepui.sdk.protocol.values import (
    AgentInfo,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    TaskInfo,
    TaskReason,
    TaskSource,
    TaskState,
    TaskStatus,
)
from tepui.sdk.dealer import DealerEndpoint
from twisted.internet import defer

log = logging.getLogger("tepui.sdk.executor")

DEFAULT_RECOVERY_TIMEOUT = 900.0  # Mesos --recovery_timeout: an agent restart (an upgrade) is no reason to stop
DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_SHUTDOWN_GRACE_PERIOD = 5.0
MISSED_HEARTBEATS = 3
SUBSCRIBE_BACKOFF = 0.25
MAX_SUBSCRIBE_BACKOFF = 2.0  # Mesos: MESOS_SUBSCRIPTION_BACKOFF_MAX defaults to 2 secs
DRAIN_POLL = 0.05

# Each setting: Tepui's variable first, then the Mesos name an agent of Mesos would set.
ENV_ENDPOINT = ("TEPUI_AGENT_ENDPOINT", "MESOS_AGENT_ENDPOINT")
ENV_FRAMEWORK_ID = ("TEPUI_FRAMEWORK_ID", "MESOS_FRAMEWORK_ID")
ENV_EXECUTOR_ID = ("TEPUI_EXECUTOR_ID", "MESOS_EXECUTOR_ID")
ENV_RECOVERY_TIMEOUT = ("TEPUI_RECOVERY_TIMEOUT", "MESOS_RECOVERY_TIMEOUT")
ENV_SHUTDOWN_GRACE_PERIOD = ("TEPUI_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD")
ENV_HEARTBEAT_INTERVAL = ("TEPUI_EXECUTOR_HEARTBEAT_INTERVAL",)
ENV_SECRET = ("TEPUI_EXECUTOR_SECRET",)


class Executor:
    """Executor callbacks; override what you need. Each receives the driver first."""

    def subscribed(
        self, driver: ExecutorDriver, executor_info: ExecutorInfo, framework_info: FrameworkInfo, agent_info: AgentInfo
    ) -> None:
        """Subscribed with the agent (again after each re-subscription, e.g. an agent restart)."""

    def disconnected(self, driver: ExecutorDriver) -> None:
        """The agent went silent or restarted; the driver is re-subscribing."""

    def launch_task(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        """Run ``task`` and report it with :meth:`ExecutorDriver.send_status_update`
        (TASK_RUNNING, then a terminal state)."""

    def launch_task_group(self, driver: ExecutorDriver, tasks: list[TaskInfo]) -> None:
        """Run a task group: all of its tasks, together."""

    def kill_task(self, driver: ExecutorDriver, task_id: str, kill_policy: KillPolicy | None) -> None:
        """Kill the task (honouring ``kill_policy.grace_period_seconds``) and send TASK_KILLED."""

    def acknowledged(self, driver: ExecutorDriver, task_id: str, uuid: bytes) -> None:
        """The agent took over the update ``uuid`` (it is no longer resent on re-subscription)."""

    def framework_message(self, driver: ExecutorDriver, data: bytes) -> None:
        """A message from the framework's scheduler (best effort, may be lost)."""

    def shutdown(self, driver: ExecutorDriver) -> None:
        """Kill every task and report it; the driver then drains and stops."""

    def error(self, driver: ExecutorDriver, message: str) -> None:
        """The agent refused something this executor sent; the message says what."""


def _env(names: tuple[str, ...], what: str, explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    also = f" (nor {', '.join(names[1:])})" if len(names) > 1 else ""
    raise ValueError(
        f"{names[0]} is not set{also}: the executor must be started by an agent, which sets it to "
        f"{what} (or pass it to ExecutorDriver explicitly)"
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*$")
_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "ns": 1e-9, "us": 1e-6, "ms": 1e-3,
    "min": 60.0, "mins": 60.0, "hr": 3600.0, "hrs": 3600.0, "day": 86400.0, "days": 86400.0,
    "week": 604800.0, "weeks": 604800.0,
}


def _duration(names: tuple[str, ...], explicit: float | None, default: float) -> float:
    """Seconds from the argument, else the first variable set (plain seconds or a Mesos
    duration such as ``15secs`` or ``1mins``), else ``default``."""
    if explicit is not None:
        seconds, source = float(explicit), "argument"
    else:
        name = next((n for n in names if os.environ.get(n)), None)
        if name is None:
            return default
        text = os.environ[name]
        match = _DURATION.match(text.lower())
        if match is None or match.group(2) not in _UNITS:
            raise ValueError(
                f"{name}={text!r} is not a duration: expected seconds (e.g. 15) or a Mesos duration (e.g. 15secs, 1mins)"
            )
        seconds, source = float(match.group(1)) * _UNITS[match.group(2)], name
    if not seconds > 0:
        raise ValueError(f"{source}: a duration must be positive, got {seconds}")
    return seconds


EndpointFactory = Callable[[Any, str, Callable[[bytes], None]], Any]


class ExecutorDriver:
    """Connects an :class:`Executor` to its agent. Library code: pass the reactor in."""

    def __init__(
        self,
        executor: Executor,
        *,
        reactor: Any,
        endpoint: str | None = None,
        framework_id: str | None = None,
        executor_id: str | None = None,
        recovery_timeout: float | None = None,
        heartbeat_interval: float | None = None,
        shutdown_grace_period: float | None = None,
        endpoint_factory: EndpointFactory | None = None,
        secret: str | None = None,
    ) -> None:
        """Arguments left ``None`` come from the environment the agent sets for a custom
        executor (``TEPUI_*``, or the ``MESOS_*`` names as fallbacks); a missing coordinate is
        a ValueError. ``endpoint_factory(reactor, address, on_message)`` replaces the ZeroMQ
        :class:`DealerEndpoint` (tests drive the driver through it on a fake clock)."""
        self.executor = executor
        self.reactor = reactor
        self.endpoint = _env(ENV_ENDPOINT, "the agent's executor socket (ipc://PATH)", endpoint)
        if "://" not in self.endpoint:
            raise ValueError(
                f"agent endpoint {self.endpoint!r} is not a ZeroMQ address: expected ipc://PATH "
                "(the agent's executor socket in its work dir)"
            )
        self.framework_id = _env(ENV_FRAMEWORK_ID, "the id of the framework this executor belongs to", framework_id)
        self.executor_id = _env(ENV_EXECUTOR_ID, "this executor's id", executor_id)
        self._secret = _env(ENV_SECRET, "the secret it generated for this executor", secret)
        if secret is None:
            os.environ.pop(ENV_SECRET[0], None)  # tasks this executor starts must not inherit it
        self.recovery_timeout = _duration(ENV_RECOVERY_TIMEOUT, recovery_timeout, DEFAULT_RECOVERY_TIMEOUT)
        self.heartbeat_interval = _duration(ENV_HEARTBEAT_INTERVAL, heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL)
        self.shutdown_grace_period = _duration(
            ENV_SHUTDOWN_GRACE_PERIOD, shutdown_grace_period, DEFAULT_SHUTDOWN_GRACE_PERIOD
        )
        self.codec: Codec[Any] = Codec(ExecutorInbound)
        self.connected = False
        self.executor_info: ExecutorInfo | None = None
        self.framework_info: FrameworkInfo | None = None
        self.agent_info: AgentInfo | None = None
        self._factory: EndpointFactory = endpoint_factory or (
            lambda r, address, on_message: DealerEndpoint(r, address, on_message)
        )
        self._endpoint: Any = None
        self._closed = False
        self._msg_id = 0
        self._incarnation: str | None = None  # the agent's, from the envelope of SUBSCRIBED
        self._last_heard = 0.0  # last sign of a live subscription; the recovery clock
        self._backoff = SUBSCRIBE_BACKOFF
        self._subscribe_call: Any = None
        self._tick_call: Any = None
        self._drain_call: Any = None
        self._shutting_down = False
        self._exit_requested = False
        self._stop_result: defer.Deferred[None] | None = None
        self._unacked_tasks: dict[str, TaskInfo] = {}  # launched; no update of theirs acknowledged
        self._unacked_updates: dict[bytes, TaskStatus] = {}  # uuid → update, in sending order
        self._live: set[str] = set()  # launched, no terminal update sent yet
        self._in_last_subscribe: set[bytes] = set()  # uuids the latest SUBSCRIBE carried

    # --- what the executor said that the agent has not taken over yet ----------------------

    @property
    def unacknowledged_updates(self) -> list[TaskStatus]:
        return list(self._unacked_updates.values())

    @property
    def unacknowledged_tasks(self) -> list[TaskInfo]:
        return list(self._unacked_tasks.values())

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Connects and subscribes; callbacks start arriving once the reactor runs."""
        if self._endpoint is not None:
            raise RuntimeError("the driver is already started")
        self._endpoint = self._factory(self.reactor, self.endpoint, self._on_message)
        self._last_heard = self.reactor.seconds()  # the recovery clock starts now
        log.info(
            "event=executor_starting endpoint=%s framework_id=%s executor_id=%s",
            self.endpoint, self.framework_id, self.executor_id,
        )
        self._subscribe()
        self._tick_call = self.reactor.callLater(self.heartbeat_interval, self._tick)

    def run(self) -> None:
        """Starts the driver and runs the reactor until the driver stops it (SHUTDOWN, agent
        gone for ``recovery_timeout``, :meth:`stop_and_exit`) or something else does."""
        self.reactor.callWhenRunning(self.start)
        self.reactor.run()

    def stop(self) -> defer.Deferred[None]:
        """Stops delivering callbacks and closes the connection; idempotent. Sends already
        made leave first (the socket lingers)."""
        if self._stop_result is not None:
            return self._stop_result
        for call in (self._subscribe_call, self._tick_call, self._drain_call):
            if call is not None and call.active():
                call.cancel()
        self.connected = False
        done: defer.Deferred[None] = defer.Deferred()
        self._stop_result = done

        def close() -> None:
            self._closed = True
            if self._endpoint is not None:
                self._endpoint.close()
            done.callback(None)

        # On a later turn, so that updates sent by the callback that is stopping us still
        # leave through the endpoint's own send queue.
        self.reactor.callLater(DRAIN_POLL, close)
        return done

    def stop_and_exit(self) -> None:
        """Stops the driver, then the reactor: the usual end of an executor process."""
        if self._exit_requested:
            return
        self._exit_requested = True

        def exit_reactor(_: Any) -> None:
            if getattr(self.reactor, "running", False):
                self.reactor.stop()

        self.stop().addBoth(exit_reactor)

    # --- calls ----------------------------------------------------------------------------

    def send_status_update(
        self,
        task_id: str,
        state: TaskState,
        message: str | None = None,
        data: bytes | None = None,
        healthy: bool | None = None,
        *,
        reason: TaskReason | None = None,
        exit_code: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> bytes:
        """Sends an update and keeps it until the agent acknowledges it; returns its uuid.
        Not subscribed right now: it travels in the next SUBSCRIBE instead."""
        state = TaskState(state)
        if state is TaskState.STAGING:
            raise ValueError("Mesos semantics: an executor may not send TASK_STAGING (the agent reports it)")
        status = TaskStatus(
            task_id=task_id,
            state=state,
            message=message,
            source=TaskSource.EXECUTOR,
            reason=reason,
            data=data,
            agent_id=self.agent_info.id if self.agent_info is not None else None,
            executor_id=self.executor_id,
            timestamp=time.time(),
            uuid=uuid.uuid4().bytes,
            healthy=healthy,
            labels=dict(labels or {}),
            exit_code=exit_code,
        )
        assert status.uuid is not None
        self._unacked_updates[status.uuid] = status
        if state.is_terminal:
            self._live.discard(task_id)
        if self.connected:
            self._send(em.ExecutorUpdate(status))
        else:
            log.info("event=update_held task_id=%s state=%s reason=not_subscribed", task_id, state.value)
        return status.uuid

    def send_framework_message(self, data: bytes) -> None:
        """Best effort (Mesos semantics): dropped, with a log line, while not subscribed."""
        if self._endpoint is None:
            raise RuntimeError("the driver is not started; call start() (or run()) first")
        if not self.connected:
            log.warning("event=framework_message_dropped bytes=%d reason=not_subscribed", len(data))
            return
        self._send(em.ExecutorMessage(bytes(data)))

    # --- subscription and liveness --------------------------------------------------------

    def _subscribe(self) -> None:
        self._subscribe_call = None
        if self._stop_result is not None or self.connected or self._shutting_down:
            return
        self._in_last_subscribe = set(self._unacked_updates)
        self._send(
            em.ExecutorSubscribe(
                framework_id=self.framework_id,
                executor_id=self.executor_id,
                unacknowledged_tasks=self.unacknowledged_tasks,
                unacknowledged_updates=[
                    em.UnacknowledgedUpdate(self.framework_id, s) for s in self._unacked_updates.values()
                ],
                secret=self._secret,
            )
        )
        delay = self._backoff * (0.5 + random.random() / 2)
        self._backoff = min(self._backoff * 2, MAX_SUBSCRIBE_BACKOFF)
        self._subscribe_call = self.reactor.callLater(delay, self._subscribe)

    def _disconnect(self, why: str) -> None:
        log.warning("event=agent_disconnected reason=%s", why)
        self.connected = False
        self._backoff = SUBSCRIBE_BACKOFF
        self._call("disconnected")
        if self._subscribe_call is None or not self._subscribe_call.active():
            self._subscribe()

    def _tick(self) -> None:
        self._tick_call = None
        if self._stop_result is not None:
            return
        silent = self.reactor.seconds() - self._last_heard
        if self.connected:
            if silent > MISSED_HEARTBEATS * self.heartbeat_interval:
                self._disconnect(f"silent_for_{silent:.1f}s")
            else:
                self._send(em.ExecutorHeartbeat())
        if not self.connected and not self._shutting_down and silent > self.recovery_timeout:
            log.warning("event=agent_gone seconds=%.1f recovery_timeout=%.1f", silent, self.recovery_timeout)
            self._begin_shutdown(agent_gone=True)
        self._tick_call = self.reactor.callLater(self.heartbeat_interval, self._tick)

    # --- inbound --------------------------------------------------------------------------

    def _on_message(self, payload: bytes) -> None:
        for env in self.codec.envelopes(payload):  # one, or a batch (tepui.sdk.batch)
            if self._stop_result is not None:
                return
            if isinstance(env, ProtocolError):
                log.warning("event=malformed_message error=%r", str(env))
                continue
            self._on_envelope(env)

    def _on_envelope(self, env: Any) -> None:
        body = env.body
        if isinstance(body, em.ExecutorSubscribed):
            self._on_subscribed(body, env.incarnation)
            return
        if self.connected and env.incarnation is not None and self._incarnation is not None \
                and env.incarnation != self._incarnation:
            # The agent restarted (its answer to our heartbeat is "not subscribed"): the new
            # one recovered us from its checkpoint and waits for us; re-subscribe at once.
            self._disconnect(f"agent_incarnation_changed_to_{env.incarnation}")
            return
        if isinstance(body, em.ExecutorError):
            self._call("error", body.message)
            return
        if not self.connected:
            return  # not subscribed (yet, or any more): nothing else is meant for us
        self._last_heard = self.reactor.seconds()
        if isinstance(body, em.LaunchTask):
            if self._launched([body.task]):
                self._call("launch_task", body.task)
        elif isinstance(body, em.LaunchTaskGroup):
            tasks = list(body.task_group.tasks)
            if self._launched(tasks):
                self._call("launch_task_group", tasks)
        elif isinstance(body, em.KillTaskEvent):
            self._call("kill_task", body.task_id, body.kill_policy)
        elif isinstance(body, em.Acknowledged):
            self._on_acknowledged(body.task_id, body.uuid)
        elif isinstance(body, em.MessageToExecutor):
            self._call("framework_message", body.data)
        elif isinstance(body, em.ShutdownEvent):
            self._begin_shutdown(agent_gone=False)
        # ExecutorHeartbeatEvent: proof of life, already counted above.

    def _on_subscribed(self, body: em.ExecutorSubscribed, incarnation: str | None) -> None:
        if self._shutting_down:
            return
        if self._subscribe_call is not None and self._subscribe_call.active():
            self._subscribe_call.cancel()
        self._subscribe_call = None
        self.executor_info, self.framework_info, self.agent_info = body.executor_info, body.framework_info, body.agent_info
        self._incarnation = incarnation
        self._last_heard = self.reactor.seconds()
        self._backoff = SUBSCRIBE_BACKOFF
        was_connected, self.connected = self.connected, True
        if not was_connected:
            # Updates made after the latest SUBSCRIBE left were held, not sent: send them now.
            # (Every SUBSCRIBE reaches the agent in order, so the latest one covers the rest.)
            for status in list(self._unacked_updates.values()):
                if status.uuid not in self._in_last_subscribe:
                    self._send(em.ExecutorUpdate(status))
            log.info(
                "event=executor_subscribed agent_id=%s incarnation=%s unacknowledged_updates=%d",
                body.agent_info.id, incarnation, len(self._unacked_updates),
            )
            self._call("subscribed", body.executor_info, body.framework_info, body.agent_info)

    def _launched(self, tasks: Iterable[TaskInfo]) -> bool:
        """At most once per task id: a repeated launch of a task the executor still tracks is
        dropped, not run twice (the agent refuses duplicate ids in the first place)."""
        tasks = list(tasks)
        known = [t.task_id for t in tasks if t.task_id in self._live or t.task_id in self._unacked_tasks]
        if known:
            log.warning("event=duplicate_launch_dropped task_ids=%s", ",".join(known))
            return False
        for task in tasks:
            self._unacked_tasks[task.task_id] = task
            self._live.add(task.task_id)
        return True

    def _on_acknowledged(self, task_id: str, update_uuid: bytes) -> None:
        status = self._unacked_updates.get(update_uuid)
        if status is None or status.task_id != task_id:
            log.info("event=unknown_acknowledgement task_id=%s uuid=%s", task_id, update_uuid.hex())
            return
        del self._unacked_updates[update_uuid]
        self._unacked_tasks.pop(task_id, None)
        self._call("acknowledged", task_id, update_uuid)

    # --- shutdown -------------------------------------------------------------------------

    def _begin_shutdown(self, agent_gone: bool) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        if self._subscribe_call is not None and self._subscribe_call.active():
            self._subscribe_call.cancel()
        log.info("event=executor_shutting_down reason=%s live_tasks=%d", "agent_gone" if agent_gone else "shutdown", len(self._live))
        self._call("shutdown")
        self._drain(self.reactor.seconds() + self.shutdown_grace_period, agent_gone)

    def _drain(self, deadline: float, agent_gone: bool) -> None:
        """Waits for every task to end and (agent still there) every update to be taken over."""
        self._drain_call = None
        if self._stop_result is not None:
            return
        drained = not self._live and (agent_gone or not self.connected or not self._unacked_updates)
        if drained or self.reactor.seconds() >= deadline:
            if not drained:
                log.warning(
                    "event=shutdown_grace_expired live_tasks=%d unacknowledged_updates=%d",
                    len(self._live), len(self._unacked_updates),
                )
            self.stop_and_exit()
            return
        self._drain_call = self.reactor.callLater(DRAIN_POLL, self._drain, deadline, agent_gone)

    # --- plumbing -------------------------------------------------------------------------

    def _call(self, name: str, *args: Any) -> None:
        """A bug in one callback must not take the connection down with it."""
        try:
            getattr(self.executor, name)(self, *args)
        except Exception:
            log.exception("event=executor_callback_failed callback=%s", name)

    def _send(self, body: Any) -> None:
        if self._endpoint is None:
            raise RuntimeError("the driver is not started; call start() (or run()) first")
        if self._closed:
            log.debug("event=call_after_stop_dropped type=%s", type(body).__name__)
            return
        self._msg_id += 1
        self._endpoint.send(self.codec.encode(envelope(body, self._msg_id)))
