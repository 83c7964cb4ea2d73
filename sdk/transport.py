"""ZeroMQ transport on the asyncio loop under Twisted (DESIGN §3, RELIABILITY "ZeroMQ traps").

* The master binds one ROUTER; agents and frameworks connect a DEALER each.
* Reading: the ZeroMQ FD is edge-triggered, so every wake-up *drains* all ready messages with
  NOBLOCK receives (one await per message is ~4x slower). This is the mechanism ``zmq.asyncio``
  uses internally; we register the FD with the loop ourselves to avoid a future per wake-up.
  A send can consume the edge too, so after sending we check ``EVENTS`` and drain if needed.
* Sending never blocks the loop: a NOBLOCK send that meets the high-water mark goes to a
  bounded queue of our own, flushed when the socket becomes writable; overflow is counted and
  logged, never silent. ``ROUTER_MANDATORY`` turns a send to a vanished peer into an error we
  report (``on_unreachable``) instead of a silent drop.
* Frame counts are checked on receipt (ROUTER: identity + one payload; DEALER: one payload);
  violators are counted and dropped. ``MAXMSGSIZE`` caps each frame before it reaches Python.
* Explicit HWMs, ``LINGER``, ZMTP heartbeats (they only prove the peer's I/O thread lives;
  cores ping at the application level too).

Payloads are bytes here; decoding with limits is the codec's job.
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from tepui.sdk.codec import DEFAULT_MAX_BYTES
from tepui.sdk.runtime import event_loop

log = logging.getLogger("tepui.transport")

DRAIN_BATCH = 2000  # messages handled per wake-up before yielding to timers and HTTP
PENDING_LIMIT = 100_000


@dataclass
class TransportStats:
    received: int = 0
    sent: int = 0
    bad_frames: int = 0
    queued: int = 0
    overflow_dropped: int = 0
    unreachable: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _common_options(sock: zmq.Socket, max_bytes: int, hwm: int, linger_ms: int) -> None:
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes + 1024)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 5000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 15000)


class _Endpoint:
    """Shared drain-and-queue machinery for ROUTER and DEALER endpoints."""

    def __init__(self, reactor: Any, sock: zmq.Socket, on_batch_end: Callable[[], None] | None) -> None:
        self._reactor = reactor
        self._loop = event_loop(reactor)
        self._sock = sock
        self._fd = sock.getsockopt(zmq.FD)
        self._pending: collections.deque[list[bytes]] = collections.deque()
        self._flush_scheduled = False
        self._drain_scheduled = False
        self._closed = False
        self._on_batch_end = on_batch_end
        self.stats = TransportStats()

    def _start_reading(self) -> None:
        self._loop.add_reader(self._fd, self._on_fd)
        self._schedule_drain()

    def _on_fd(self) -> None:
        if self._closed:
            return
        events = self._sock.getsockopt(zmq.EVENTS)
        if events & zmq.POLLOUT and self._pending:
            self._flush()
        if events & zmq.POLLIN:
            self._drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and not self._closed:
            self._drain_scheduled = True
            self._loop.call_soon(self._scheduled_drain)

    def _scheduled_drain(self) -> None:
        self._drain_scheduled = False
        self._drain()

    def _drain(self) -> None:
        if self._closed:
            return
        handled = 0
        try:
            while handled < DRAIN_BATCH:
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handled += 1
                self.stats.received += 1
                try:
                    self._dispatch(frames)
                except Exception:  # a handler bug must not kill the read loop
                    log.exception("event=handler_failed")
                if self._closed:  # the handler closed us: the socket is gone
                    return
        finally:
            if handled and self._on_batch_end is not None and not self._closed:
                try:
                    self._on_batch_end()
                except Exception:
                    log.exception("event=batch_end_failed")
        if handled >= DRAIN_BATCH:
            self._schedule_drain()  # more may be waiting; let timers and HTTP run first

    def _dispatch(self, frames: list[bytes]) -> None:
        raise NotImplementedError

    def _send_frames(self, frames: list[bytes]) -> None:
        if self._closed:
            return
        if self._pending:
            self._enqueue(frames)
            return
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
            self.stats.sent += 1
        except zmq.Again:
            self._enqueue(frames)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.stats.unreachable += 1
                self._unreachable(frames)
            else:
                raise
        self._check_readable()

    def _check_readable(self) -> None:
        # A send can swallow the FD's edge: look for input we would otherwise not be woken for.
        if not self._closed and self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._schedule_drain()

    def _unreachable(self, frames: list[bytes]) -> None:
        pass

    def _enqueue(self, frames: list[bytes]) -> None:
        if len(self._pending) >= PENDING_LIMIT:
            self._pending.popleft()
            self.stats.overflow_dropped += 1
            log.warning("event=send_queue_overflow limit=%d dropped=oldest", PENDING_LIMIT)
        self._pending.append(frames)
        self.stats.queued += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._reactor.callLater(0.01, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()
        if self._pending and not self._closed:
            self._flush_scheduled = True
            self._reactor.callLater(0.05, self._timed_flush)

    def _flush(self) -> None:
        while self._pending and not self._closed:
            frames = self._pending[0]
            try:
                self._sock.send_multipart(frames, zmq.NOBLOCK)
                self.stats.sent += 1
            except zmq.Again:
                break
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self.stats.unreachable += 1
                self._unreachable(frames)
            self._pending.popleft()
        self._check_readable()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _stop_reading(self._loop, self._fd)
        self._sock.close()


class RouterEndpoint(_Endpoint):
    """The master's socket: many peers, each addressed by its routing id."""

    def __init__(
        self,
        reactor: Any,
        bind: str,
        on_message: Callable[[bytes, bytes], None],
        on_unreachable: Callable[[bytes], None] | None = None,
        on_batch_end: Callable[[], None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        hwm: int = 10_000,
        context: zmq.Context | None = None,
    ) -> None:
        ctx = context or zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        _common_options(sock, max_bytes, hwm, linger_ms=0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        super().__init__(reactor, sock, on_batch_end)
        self._on_message = on_message
        self._on_unreachable_cb = on_unreachable
        sock.bind(bind)
        self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._start_reading()

    def _dispatch(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self.stats.bad_frames += 1
            log.warning("event=bad_frame_count frames=%d expected=2", len(frames))
            return
        self._on_message(frames[0], frames[1])

    def send(self, peer: bytes, payload: bytes) -> None:
        self._send_frames([peer, payload])

    def _unreachable(self, frames: list[bytes]) -> None:
        if self._on_unreachable_cb is not None:
            self._on_unreachable_cb(frames[0])


class DealerEndpoint(_Endpoint):
    """An agent's or framework's socket to the master. The routing id is fixed per endpoint so
    that a reconnect (after a network blip) keeps the master's route to us (``ROUTER_HANDOVER``)."""

    def __init__(
        self,
        reactor: Any,
        connect: str,
        on_message: Callable[[bytes], None],
        on_batch_end: Callable[[], None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        hwm: int = 10_000,
        context: zmq.Context | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        ctx = context or zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        _common_options(sock, max_bytes, hwm, linger_ms=1000)
        self.routing_id = os.urandom(12)
        sock.setsockopt(zmq.ROUTING_ID, self.routing_id)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        super().__init__(reactor, sock, on_batch_end)
        self._on_message = on_message
        self._monitor: _ConnectionMonitor | None = None
        if on_reconnect is not None:
            self._monitor = _ConnectionMonitor(self._loop, sock, on_reconnect)
        sock.connect(connect)
        self._start_reading()

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        super().close()

    def _dispatch(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self.stats.bad_frames += 1
            log.warning("event=bad_frame_count frames=%d expected=1", len(frames))
            return
        self._on_message(frames[0])

    def send(self, payload: bytes) -> None:
        self._send_frames([payload])


class _ConnectionMonitor:
    """Tells the owner of a DEALER when its connection comes back after a loss (ZeroMQ
    reconnects on its own and says nothing; the socket monitor does). A peer that restarted
    (a master after a crash) has forgotten us, so the owner re-subscribes or re-registers at
    once instead of waiting for its silence timeout. Read like every ZeroMQ socket here: the
    FD is edge-triggered, so each wake-up drains every event."""

    def __init__(self, loop: Any, sock: zmq.Socket, on_reconnect: Callable[[], None]) -> None:
        self._loop, self._sock, self._on_reconnect = loop, sock, on_reconnect
        self._events = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._fd = self._events.getsockopt(zmq.FD)
        self._lost = False
        self._closed = False
        loop.add_reader(self._fd, self._drain)
        loop.call_soon(self._drain)

    def _drain(self) -> None:
        from zmq.utils.monitor import parse_monitor_message

        while not self._closed:
            try:
                frames = self._events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            event = parse_monitor_message(frames)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self._lost = True
                log.info("event=connection_lost")
            elif event == zmq.EVENT_CONNECTED and self._lost:
                self._lost = False
                log.info("event=connection_restored")
                try:
                    self._on_reconnect()
                except Exception:  # a handler bug must not kill the read loop
                    log.exception("event=reconnect_handler_failed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _stop_reading(self._loop, self._fd)
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._events.close(linger=0)


def _stop_reading(loop: Any, fd: int) -> None:
    """Closing twice, or after the loop went away, is not an error worth a traceback."""
    try:
        loop.remove_reader(fd)
    except Exception:
        pass


def tcp_address(host_port: str, default_port: int) -> str:
    """``host[:port]`` → ``tcp://host:port``, with a clear error for nonsense."""
    text = host_port.strip()
    if text.startswith("tcp://"):
        text = text[len("tcp://") :]
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {host_port!r}: expected HOST:PORT, e.g. 127.0.0.1:{default_port}")
    return f"tcp://{host}:{port}"
