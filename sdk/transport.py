"""ZeroMQ transport on the asyncio loop under Twisted (DESIGN §3, RELIABILITY "ZeroMQ traps"):
what both of its ends share.

* The master binds one ROUTER (:mod:`tepui.sdk.router`); agents and frameworks connect a DEALER
  each (:mod:`tepui.sdk.dealer`). This module is what the two ends have in common — reading,
  sending, batching, socket options, counters — so that each end's module holds only what
  that end alone has to do (many peers to police; one peer to reach).
* Reading: the ZeroMQ FD is edge-triggered, so every wake-up *drains* all ready messages with
  NOBLOCK receives (one await per message is ~4x slower). This is the mechanism ``zmq.asyncio``
  uses internally; we register the FD with the loop ourselves to avoid a future per wake-up.
  A send can consume the edge too, so after sending we check ``EVENTS`` and drain if needed.
* Sending never blocks the loop: a NOBLOCK send that meets the high-water mark goes to a
  bounded queue of our own, one per peer (a peer that stops reading holds back only its own
  messages), flushed when the socket becomes writable; overflow is counted and logged, never
  silent, and costs the peer whose queue is full its oldest messages. ``ROUTER_MANDATORY``
  turns a send to a vanished peer into an error we report (``on_unreachable``) instead of a
  silent drop.
* Frame counts are checked on receipt (ROUTER: identity + one payload; DEALER: one payload);
  violators are counted and dropped, and a ROUTER peer is also disconnected (trap 4): frames are
  read one at a time and the surplus discarded as it is read, so a flood never becomes a Python
  list. ``MAXMSGSIZE`` caps each frame before it reaches Python (libzmq disconnects violators).
* CurveZMQ (``curve=``): the ROUTER authenticates through a ZAP handler started before ``bind()``
  and passes each message's authenticated identity on; a DEALER logs refused handshakes. See
  :mod:`tepui.sdk.curve`.
* Explicit HWMs, ``LINGER``, ZMTP heartbeats (they only prove the peer's I/O thread lives;
  cores ping at the application level too).
* Batching (:mod:`tepui.sdk.batch`): ``send`` puts the payload in an outbox; what is queued for
  one peer in one turn of the loop leaves as one frame, at the end of the turn, at the end of a
  drain, or every ``FLUSH_EVERY`` messages of a long drain (so a busy peer's answers never wait
  for 2,000 messages). Per peer, order is kept. ``close`` sends what is queued first.

Payloads are encoded MessagePack values (envelopes): batching packs several into one array.
Decoding, with limits, is the codec's job (``Codec.envelopes`` splits a batch).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, cast

import zmq

from tepui.sdk.batch import Outbox
from tepui.sdk.codec import DEFAULT_MAX_BYTES
from tepui.sdk.runtime import event_loop

log = logging.getLogger("tepui.transport")

DRAIN_BATCH = 2000  # messages handled per wake-up before yielding to timers and HTTP
FLUSH_EVERY = 32  # within a drain, the outbox is sent at least every this many messages (about 1 ms of work)
PENDING_LIMIT = 100_000


@dataclass
class TransportStats:
    received: int = 0  # frames
    sent: int = 0  # envelopes handed to ZeroMQ (a batch counts each of its envelopes)
    frames_sent: int = 0
    bad_frames: int = 0
    queued: int = 0
    overflow_dropped: int = 0
    unreachable: int = 0
    disconnected_peers: int = 0  # ROUTER: connections cut for breaking the frame limits
    cut_undelivered: int = 0  # ROUTER: connections cut for holding too many undelivered bytes
    refused_revoked: int = 0  # ROUTER: messages from a key revoked since it connected
    by_kind: dict[str, int] = field(default_factory=dict)


def common_options(sock: zmq.Socket, max_bytes: int, hwm: int, linger_ms: int,
                    heartbeat_seconds: float = 5.0) -> None:
    """ZMTP heartbeats every ``heartbeat_seconds`` (a peer silent for three intervals is
    dropped); 0 turns them off on this socket — the peers' own heartbeats are still answered."""
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes + 1024)
    if heartbeat_seconds > 0:
        interval_ms = max(1, int(heartbeat_seconds * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * interval_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * interval_ms)


class Endpoint:
    """Shared drain-and-queue machinery for ROUTER and DEALER endpoints."""

    def __init__(self, reactor: Any, sock: zmq.Socket, on_batch_end: Callable[[], None] | None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._reactor = reactor
        self._loop = event_loop(reactor)
        self._sock = sock
        self._fd = sock.fileno()  # ZMQ_FD, typed as the int it is
        # Frames ZeroMQ would not take yet (that peer's high-water mark), per peer, with the
        # envelopes each holds; a peer with nothing queued has no entry.
        self._pending: dict[Any, collections.deque[tuple[list[bytes], int]]] = {}
        self._pending_frames = 0
        self._flush_scheduled = False
        self._drain_scheduled = False
        self._outbox: Outbox[Any] = Outbox(max_bytes)
        self._outbox_scheduled = False
        self._draining = False
        self._closed = False
        self._on_batch_end = on_batch_end
        self.stats = TransportStats()

    def _start_reading(self) -> None:
        self._loop.add_reader(self._fd, self._on_fd)
        self._schedule_drain()

    def _on_fd(self) -> None:
        if self._closed:
            return
        events = self._events()
        if events & zmq.POLLOUT and self._pending:
            self._flush()
        if events & zmq.POLLIN:
            self._drain()

    def _events(self) -> int:
        """ZMQ_EVENTS: the socket's POLLIN/POLLOUT bits. An int option, but pyzmq types
        ``getsockopt`` as ``int | bytes`` for every option, hence the cast."""
        return cast(int, self._sock.getsockopt(zmq.EVENTS))

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
        self._draining = True
        try:
            while handled < DRAIN_BATCH:
                try:
                    frames = self._recv()
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
                if handled % FLUSH_EVERY == 0:
                    self.flush()
        finally:
            if handled and self._on_batch_end is not None and not self._closed:
                try:
                    self._on_batch_end()
                except Exception:
                    log.exception("event=batch_end_failed")
            self._draining = False
            self.flush()
        if handled >= DRAIN_BATCH:
            self._schedule_drain()  # more may be waiting; let timers and HTTP run first

    def _recv(self) -> Any:
        return self._sock.recv_multipart(zmq.NOBLOCK)

    def _dispatch(self, frames: Any) -> None:
        raise NotImplementedError

    def _post(self, peer: Any, payload: bytes) -> None:
        """Queues one encoded envelope for ``peer``; it leaves with the others of this turn."""
        if self._closed:
            return
        self._outbox.add(peer, payload)
        if not self._draining and not self._outbox_scheduled:
            self._outbox_scheduled = True
            self._loop.call_soon(self._scheduled_flush_outbox)

    def flush(self) -> None:
        """Sends what is queued now rather than at the end of this turn: before slow work
        (an agent spawning a process) that must not hold back messages already decided."""
        if self._outbox:
            self._flush_outbox()

    def _scheduled_flush_outbox(self) -> None:
        self._outbox_scheduled = False
        self.flush()

    def _flush_outbox(self) -> None:
        if self._closed:
            return
        for peer, frame, count in self._outbox.take():
            self._send_frames(peer, self._frames_for(peer, frame), count)
        self._check_readable()

    def _frames_for(self, peer: Any, frame: bytes) -> list[bytes]:
        raise NotImplementedError

    def _send_frames(self, peer: Any, frames: list[bytes], count: int = 1) -> None:
        if self._closed:
            return
        if peer in self._pending:
            self._enqueue(peer, frames, count)  # behind what already waits for this peer
            return
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
            self.stats.sent += count
            self.stats.frames_sent += 1
        except zmq.Again:
            self._enqueue(peer, frames, count)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.stats.unreachable += 1
                self._unreachable(frames)
            else:
                raise

    def _check_readable(self) -> None:
        # A send can swallow the FD's edge: look for input we would otherwise not be woken for.
        if not self._closed and self._events() & zmq.POLLIN:
            self._schedule_drain()

    def _unreachable(self, frames: list[bytes]) -> None:
        pass

    def _enqueue(self, peer: Any, frames: list[bytes], count: int) -> None:
        queue = self._pending.get(peer)
        if queue is None:
            queue = self._pending[peer] = collections.deque()
        if self._pending_frames >= PENDING_LIMIT:
            # The peer whose queue this is pays (it is the one not reading), else the longest.
            victim = queue if queue else max(self._pending.values(), key=len)
            _, dropped = victim.popleft()
            self._pending_frames -= 1
            self.stats.overflow_dropped += dropped
            log.warning("event=send_queue_overflow limit=%d dropped=oldest envelopes=%d", PENDING_LIMIT, dropped)
        queue.append((frames, count))
        self._pending_frames += 1
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
        for peer in list(self._pending):
            queue = self._pending[peer]
            while queue and not self._closed:
                frames, count = queue[0]
                try:
                    self._sock.send_multipart(frames, zmq.NOBLOCK)
                    self.stats.sent += count
                    self.stats.frames_sent += 1
                except zmq.Again:
                    break  # this peer is still full; the others go on
                except zmq.ZMQError as exc:
                    if exc.errno != zmq.EHOSTUNREACH:
                        raise
                    self.stats.unreachable += 1
                    self._unreachable(frames)
                queue.popleft()
                self._pending_frames -= 1
            if self._closed:
                return
            if not queue:
                del self._pending[peer]
        self._check_readable()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()  # what was sent before close leaves (within LINGER)
        self._closed = True
        stop_reading(self._loop, self._fd)
        self._sock.close()


def stop_reading(loop: Any, fd: int) -> None:
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
