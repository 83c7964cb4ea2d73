"""ZeroMQ transport on the asyncio loop under Twisted (DESIGN §3, RELIABILITY "ZeroMQ traps").

* The master binds one ROUTER; agents and frameworks connect a DEALER each.
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
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from tepui.sdk.batch import Outbox
from tepui.sdk.codec import DEFAULT_MAX_BYTES
from tepui.sdk.curve import (
    CurveServer,
    HandshakeLog,
    ServerMonitor,
    SocketMonitor,
    apply_client,
    apply_server,
    cut_connection,
    source_fd,
    start_authenticator,
    user_id,
)
from tepui.sdk.keys import ClientKeys
from tepui.sdk.rotation import MasterKeys
from tepui.sdk.runtime import event_loop
from tepui.sdk.undelivered import Limits, Undelivered, curve_wire_size, tcp_bytes_received

log = logging.getLogger("tepui.transport")

DRAIN_BATCH = 2000  # messages handled per wake-up before yielding to timers and HTTP
FLUSH_EVERY = 32  # within a drain, the outbox is sent at least every this many messages (about 1 ms of work)
PENDING_LIMIT = 100_000
REFUSED_RETRY_SECONDS = 5.0  # a DEALER whose key the master refused tries again this often
# The undelivered-bytes bound (tepui.sdk.undelivered): the master's resident memory is looked at
# this often, and every connection is checked when it grew by WATCH_GROWTH or every CHECK_EVERY.
# A stream is thus cut within about WATCH_EVERY of growing the process by WATCH_GROWTH, at the
# cost of one small read 50 times a second (the per-connection check costs ~1 µs a connection).
WATCH_EVERY = 0.02
WATCH_GROWTH = 4 << 20
CHECK_EVERY = 0.25


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


def _common_options(sock: zmq.Socket, max_bytes: int, hwm: int, linger_ms: int,
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


class _Endpoint:
    """Shared drain-and-queue machinery for ROUTER and DEALER endpoints."""

    def __init__(self, reactor: Any, sock: zmq.Socket, on_batch_end: Callable[[], None] | None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._reactor = reactor
        self._loop = event_loop(reactor)
        self._sock = sock
        self._fd = sock.getsockopt(zmq.FD)
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
        if not self._closed and self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
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
        _stop_reading(self._loop, self._fd)
        self._sock.close()


class _Incoming:
    """One message as the ROUTER read it: at most ``max_frames`` frames kept, the rest counted."""

    __slots__ = ("frames", "extra", "identity", "props")

    def __init__(self, frames: list[bytes], extra: int, identity: str | None, props: zmq.Frame | None) -> None:
        self.frames, self.extra, self.identity, self.props = frames, extra, identity, props


class RouterEndpoint(_Endpoint):
    """The master's socket: many peers, each addressed by its routing id.

    With ``curve``, only allow-listed keys get through the handshake, and ``on_message`` is
    called as ``on_message(peer, payload, identity)`` with the key's allow-list name (with
    ``pass_identity`` and no ``curve``, identity is None: the insecure mode)."""

    def __init__(
        self,
        reactor: Any,
        bind: str,
        on_message: Callable[..., None],
        on_unreachable: Callable[[bytes], None] | None = None,
        on_batch_end: Callable[[], None] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        hwm: int = 10_000,
        context: zmq.Context | None = None,
        curve: CurveServer | None = None,
        pass_identity: bool = False,
        max_frames: int = 2,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        ctx = context or zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        _common_options(sock, max_bytes, hwm, linger_ms=0, heartbeat_seconds=heartbeat_seconds)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        super().__init__(reactor, sock, on_batch_end, max_bytes)
        self._on_message = on_message
        self._on_unreachable_cb = on_unreachable
        self._curve = curve
        self._pass_identity = pass_identity or curve is not None
        self._max_frames = max_frames
        self._auth: Any = None
        self._server_monitor: ServerMonitor | None = None
        self.undelivered: Undelivered | None = None
        self._watch: Any = None
        if curve is not None:
            # Trap 5: the ZAP handler must be there before the first peer can connect.
            self._auth = start_authenticator(ctx, curve.gate)
            apply_server(sock, curve)
            self.undelivered = Undelivered(Limits.for_message_size(max_bytes))
            self._server_monitor = ServerMonitor(self._loop, sock, self._accepted, self.undelivered.closed)
        sock.bind(bind)
        self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._ports: set[int] = set()
        if self.address.startswith("tcp://"):
            self._ports.add(int(self.address.rsplit(":", 1)[1]))
        self._served_key = curve.public if curve is not None else None  # on self.address
        self._rotation: tuple[str, bytes] | None = None  # (endpoint, public key) of a rotation
        if curve is not None:
            curve.gate.on_master_keys = self.serve_master_keys
            curve.gate.check_master_keys()
        self._start_reading()
        if self.undelivered is not None:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
            self._rss_low = self._rss()
            self._checked_at = self._loop.time()
            self._watch = self._loop.call_later(WATCH_EVERY, self._watch_memory)

    @property
    def handshake_failures(self) -> int:
        return self._server_monitor.handshakes.failures if self._server_monitor is not None else 0

    def _recv(self) -> _Incoming:
        sock = self._sock
        peer = sock.recv(zmq.NOBLOCK)
        frames = [peer]
        extra = 0
        wire = 0
        props: zmq.Frame | None = None
        while sock.getsockopt(zmq.RCVMORE):
            # The rest of a message is always there once its first frame is (libzmq delivers
            # whole messages). Kept frames are copied out; surplus ones are dropped as read.
            if len(frames) < self._max_frames:
                if self._curve is None:  # no User-Id to read: the cheaper copying receive
                    frames.append(sock.recv())
                    continue
                frame = sock.recv(copy=False)
                props = props or frame
                frames.append(frame.bytes)
                wire += curve_wire_size(len(frames[-1]))
            else:
                frame = sock.recv(copy=False)
                props = props or frame
                extra += 1
                wire += curve_wire_size(len(frame))
        identity = user_id(props) if props is not None and self._curve is not None else None
        if self.undelivered is not None and props is not None:
            self.undelivered.delivered(source_fd(props), wire, identity)
        return _Incoming(frames, extra, identity, props)

    # --- the undelivered-bytes bound (tepui.sdk.undelivered) ------------------------------

    def _accepted(self, fd: int) -> None:
        if self.undelivered is not None:
            self.undelivered.accepted(fd, self._loop.time())

    def _rss(self) -> int:
        return int(os.pread(self._statm, 128, 0).split()[1]) * _PAGE

    def _watch_memory(self) -> None:
        """Every WATCH_EVERY: the connections are checked if memory grew by WATCH_GROWTH since
        its lowest point since the last check (memory freed after a cut and taken again counts:
        the growth is measured from the low), or CHECK_EVERY passed. A timer of the loop: a busy
        master checks late, but it also reads nothing then."""
        if self._closed:
            return
        try:
            now = self._loop.time()
            rss = self._rss()
            self._rss_low = min(self._rss_low, rss)
            if now - self._checked_at >= CHECK_EVERY or rss - self._rss_low >= WATCH_GROWTH:
                self.check_undelivered()
        except Exception:  # a bug here must not end the watch
            log.exception("event=undelivered_check_failed")
        self._watch = self._loop.call_later(WATCH_EVERY, self._watch_memory)

    def check_undelivered(self) -> None:
        """Reads what is waiting (whole messages are never counted against their sender), then
        cuts each connection holding more than its bound of undelivered bytes."""
        assert self.undelivered is not None and self._curve is not None
        if self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._drain()
            if self._closed:
                return
        drained = not self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN
        received = {}
        for fd in self.undelivered.connections:
            count = tcp_bytes_received(fd)
            if count is not None:
                received[fd] = count
        now = self._loop.time()
        for cut in self.undelivered.check(received, now, drained):
            if not cut_connection(cut.fd, self._ports):
                continue
            self.stats.cut_undelivered += 1
            if cut.block and cut.identity:
                self._curve.gate.block(cut.identity)
            log.warning("event=undelivered_over_limit identity=%s undelivered_bytes=%d limit=%d key_refused_s=%s "
                        "action=disconnect hint=\"a peer sent this much of a message that has not ended (a multipart "
                        "message that never ends, or one far over the message size limit)\"", cut.identity or "-",
                        cut.undelivered, self.undelivered.limits.per_connection if drained
                        else self.undelivered.limits.ceiling, "30" if cut.block and cut.identity else "0")
        self._checked_at = now
        self._rss_low = self._rss()

    def _dispatch(self, message: _Incoming) -> None:
        frames = message.frames
        if message.extra or len(frames) != 2:
            self.stats.bad_frames += 1
            log.warning("event=bad_frame_count frames=%d expected=2 identity=%s action=disconnect",
                        len(frames) + message.extra, message.identity or "-")
            self._disconnect(message)
            return
        if self._curve is not None:
            if not message.identity or self._curve.gate.current(message.identity) is None:
                # Revoked (or removed) since it connected: ZAP only runs at the handshake.
                self.stats.refused_revoked += 1
                log.warning("event=message_from_revoked_key identity=%s action=disconnect", message.identity or "-")
                self._disconnect(message, block=False)
                return
        if self._pass_identity:
            self._on_message(frames[0], frames[1], message.identity)
        else:
            self._on_message(frames[0], frames[1])

    def _disconnect(self, message: _Incoming, block: bool = True) -> None:
        """Cuts the connection a message came on (see :func:`tepui.sdk.curve.cut_connection`)
        and refuses its key for a cool-down, so that ZeroMQ's automatic reconnect does not
        simply resume the flood. The frames are already freed: libzmq dropped them as read."""
        if block and message.identity and self._curve is not None:
            self._curve.gate.block(message.identity)
        if message.props is not None and cut_connection(source_fd(message.props), self._ports):
            self.stats.disconnected_peers += 1

    def send(self, peer: bytes, payload: bytes) -> None:
        self._post(peer, payload)

    # --- master key rotation (tepui.sdk.rotation) -----------------------------------------

    def serve_master_keys(self, keys: MasterKeys) -> None:
        """Serves ``keys``: the current pair on our address (rebound on the same listening
        socket when it changed: a rotation finished), and a rotation's next pair on its port.
        Each ``bind()`` copies the socket's CURVE options, so one socket serves both pairs."""
        if self._closed or not self.address.startswith("tcp://"):
            return
        if keys.public != self._served_key:
            self._rebind_main(keys.public, keys.secret)
        wanted = None
        if keys.rotation_port is not None and keys.next_public is not None:
            wanted = (f"{self.address.rsplit(':', 1)[0]}:{keys.rotation_port}", keys.next_public)
        if self._rotation is not None and self._rotation != wanted:
            endpoint = self._rotation[0]
            self._rotation = None
            try:
                self._sock.unbind(endpoint)
            except zmq.ZMQError:
                pass
            self._ports.discard(int(endpoint.rsplit(":", 1)[1]))
            log.info("event=master_rotation_port_closed endpoint=%s", endpoint)
        if wanted is not None and self._rotation is None:
            assert keys.next_secret is not None
            self._set_server_keys(keys.next_public, keys.next_secret)  # type: ignore[arg-type]
            try:
                self._sock.bind(wanted[0])
            except zmq.ZMQError as exc:
                log.error("event=master_rotation_port_unavailable endpoint=%s error=%r hint=\"clients given only the "
                          "next key cannot connect until the port is free (or until the rotation is finished)\"",
                          wanted[0], str(exc))
            else:
                self._rotation = wanted
                self._ports.add(keys.rotation_port)  # type: ignore[arg-type]
                log.info("event=master_rotation_port_open endpoint=%s next_public_key=%s", wanted[0],
                         keys.next_public.decode())  # type: ignore[union-attr]
            finally:
                self._set_server_keys(keys.public, keys.secret)

    def _set_server_keys(self, public: bytes, secret: bytes) -> None:
        self._sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        self._sock.setsockopt(zmq.CURVE_SECRETKEY, secret)

    def _rebind_main(self, public: bytes, secret: bytes) -> None:
        """The new key on our own address. The listening socket is kept (a duplicate of its
        descriptor is handed to the new listener, ``ZMQ_USE_FD``), so a client connecting at
        that moment waits in the kernel's backlog instead of being refused; the connections the
        old listener accepted end with it (their clients reconnect, with the new key)."""
        port = int(self.address.rsplit(":", 1)[1])
        listening = _listening_fd(port)
        kept = os.dup(listening) if listening is not None else None  # before unbind closes it
        self._set_server_keys(public, secret)
        self._sock.unbind(self.address)
        if kept is not None:
            self._sock.setsockopt(zmq.USE_FD, kept)
        try:
            self._sock.bind(self.address)
        finally:
            self._sock.setsockopt(zmq.USE_FD, -1)
        self._served_key = public
        log.warning("event=master_key_rotated endpoint=%s public_key=%s same_socket=%s", self.address,
                    public.decode(), listening is not None)

    def _frames_for(self, peer: Any, frame: bytes) -> list[bytes]:
        return [peer, frame]

    def _unreachable(self, frames: list[bytes]) -> None:
        if self._on_unreachable_cb is not None:
            self._on_unreachable_cb(frames[0])

    def close(self) -> None:
        if self._closed:
            return
        if self._server_monitor is not None:
            self._server_monitor.close()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
            os.close(self._statm)
        super().close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


class DealerEndpoint(_Endpoint):
    """An agent's or framework's socket to the master. The routing id is fixed per endpoint so
    that a reconnect (after a network blip) keeps the master's route to us (``ROUTER_HANDOVER``).
    With ``curve`` (the client key pair and the master's public key) the link is encrypted and
    the master authenticates us; a refused handshake is logged (the send itself never fails)."""

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
        curve: ClientKeys | None = None,
    ) -> None:
        self._context = context or zmq.Context.instance()
        self._max_bytes, self._hwm, self._curve = max_bytes, hwm, curve
        self.routing_id = os.urandom(12)
        # During a master key rotation: (endpoint, master key) pairs to try in turn.
        self._candidates = master_candidates(connect, curve)
        sock = self._new_socket(None)
        super().__init__(reactor, sock, on_batch_end, max_bytes)
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self.handshakes = HandshakeLog("client")
        self._connect_to = connect
        self._candidate = 0
        self._monitor: _ConnectionMonitor | None = self._watch(sock, lost=False)
        self._retry: Any = None
        sock.connect(connect)
        self._start_reading()

    def _new_socket(self, server: bytes | None) -> zmq.Socket:
        """A DEALER with our options and routing id (and ``server`` as the master key, if given).
        A client with several candidates (a rotation) sets ``ZMQ_IMMEDIATE``: a message is
        handed to libzmq only once a handshake succeeded, so what is sent while an attempt
        fails waits in our own queue and goes to the candidate that works, instead of sitting
        in the failing attempt's pipe (lost with it when we move on)."""
        sock = self._context.socket(zmq.DEALER)
        _common_options(sock, self._max_bytes, self._hwm, linger_ms=1000)
        sock.setsockopt(zmq.ROUTING_ID, self.routing_id)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        if self._curve is not None:
            apply_client(sock, self._curve)
            if server is not None:
                sock.setsockopt(zmq.CURVE_SERVERKEY, server)
        if len(self._candidates) > 1:
            sock.setsockopt(zmq.IMMEDIATE, 1)
        return sock

    def _watch(self, sock: zmq.Socket, lost: bool) -> _ConnectionMonitor:
        return _ConnectionMonitor(
            self._loop, sock, self._on_reconnect, self.handshakes, secure=self._curve is not None,
            on_refused=self._refused, on_failed_attempt=self._next_candidate if len(self._candidates) > 1 else None,
            lost=lost)

    @property
    def master(self) -> tuple[str, bytes | None]:
        """The endpoint and master key this socket uses now."""
        return self._candidates[self._candidate] if self._candidates else (self._connect_to, None)

    def _next_candidate(self, endpoint: bytes) -> None:
        """A handshake failed (this master key is not served there) or the endpoint does not
        answer (a rotation port closed): try the next endpoint and key, on a new socket.

        Not ``disconnect()`` and ``connect()`` on this one: a disconnected attempt holding
        messages lingers (``LINGER``), reconnecting with its key every 100 ms, and its failures
        reach the socket's monitor under the same endpoint name as the next attempt's when
        only the key differs — a client then left the key that worked, again and again, and
        lost what it sent (measured: 49 failures and 23 of 31 messages lost in 1.5 s). A new
        socket has a new monitor, so every event we read is the current attempt's."""
        if self._closed or endpoint.decode(errors="replace") != self._connect_to:
            return
        self._candidate = (self._candidate + 1) % len(self._candidates)
        self._connect_to, server = self._candidates[self._candidate]
        old, old_monitor = self._sock, self._monitor
        sock = self._new_socket(server)  # before the old one closes: the monitor's name comes from the fd
        self._monitor = self._watch(sock, lost=old_monitor is not None and old_monitor.lost)
        if old_monitor is not None:
            old_monitor.close()
        _stop_reading(self._loop, self._fd)
        old.close(linger=0)  # nothing of ours in it (ZMQ_IMMEDIATE): our queue holds what waits
        self._sock, self._fd = sock, sock.getsockopt(zmq.FD)
        sock.connect(self._connect_to)
        self._start_reading()

    def _refused(self) -> None:
        """The master refused our key. libzmq then ends the connection for good (a refusal is a
        protocol error, not a network one, and is not retried), so try again now and then
        ourselves: the key may be allow-listed in a moment (issued after the client started, or
        a revocation undone), and this keeps the client's behaviour the same as for a master
        that is down."""
        if self._retry is None and not self._closed:
            self._retry = self._loop.call_later(REFUSED_RETRY_SECONDS, self._reconnect)

    def _reconnect(self) -> None:
        self._retry = None
        if self._closed:
            return
        try:
            self._sock.disconnect(self._connect_to)
        except zmq.ZMQError:
            pass  # already gone with the refused session
        self._sock.connect(self._connect_to)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
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
        self._post(None, payload)

    def _frames_for(self, peer: Any, frame: bytes) -> list[bytes]:
        return [frame]


class _ConnectionMonitor(SocketMonitor):
    """Tells the owner of a DEALER when its connection comes back after a loss (ZeroMQ
    reconnects on its own and says nothing; the socket monitor does). A peer that restarted
    (a master after a crash) has forgotten us, so the owner re-subscribes or re-registers at
    once instead of waiting for its silence timeout. Over CURVE the connection counts as back
    only once the handshake succeeded (a refused key connects, fails and retries for ever; each
    round must not look like a reconnect). Handshake failures go to ``handshakes`` (trap 6)."""

    def __init__(self, loop: Any, sock: zmq.Socket, on_reconnect: Callable[[], None] | None,
                 handshakes: HandshakeLog, secure: bool, on_refused: Callable[[], None] | None = None,
                 on_failed_attempt: Callable[[bytes], None] | None = None, lost: bool = False) -> None:
        self._on_reconnect = on_reconnect
        self._on_refused = on_refused
        self._on_failed_attempt = on_failed_attempt
        self._handshakes = handshakes
        self._up_event = zmq.EVENT_HANDSHAKE_SUCCEEDED if secure else zmq.EVENT_CONNECTED
        self.lost = lost  # a connection was up and is gone (carried to the socket of the next candidate)
        super().__init__(loop, sock, zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                         | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                         | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_CONNECT_RETRIED)

    def on_event(self, event: int, value: int, endpoint: bytes) -> None:
        if event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                     zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            self._handshakes.event(event, value, endpoint)
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and self._on_refused is not None:
                self._on_refused()
            elif event != zmq.EVENT_HANDSHAKE_FAILED_AUTH and self._on_failed_attempt is not None:
                self._on_failed_attempt(endpoint)  # our key was fine; the master key was not this endpoint's
        elif event == zmq.EVENT_CONNECT_RETRIED:
            if self._on_failed_attempt is not None:
                self._on_failed_attempt(endpoint)
        elif event == zmq.EVENT_DISCONNECTED:
            if not self.lost:
                log.info("event=connection_lost")
            self.lost = True
        elif event == self._up_event and self.lost:
            self.lost = False
            log.info("event=connection_restored")
            if self._on_reconnect is not None:
                self._on_reconnect()


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _listening_fd(port: int) -> int | None:
    """This process's listening TCP socket on ``port`` (libzmq's, found by scanning our
    descriptors: libzmq does not say which it is). Only read at a key rotation."""
    import socket

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with sock:
            try:
                if (sock.type == socket.SOCK_STREAM and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                        and sock.getsockname()[1] == port):
                    return fd
            except OSError:
                continue
    return None


def master_candidates(connect: str, keys: ClientKeys | None) -> list[tuple[str, bytes]]:
    """Where to look for the master, in order: our endpoint with each master key we accept, then
    (during a rotation) the rotation port with each. Without a rotation: one candidate."""
    if keys is None:
        return []
    servers = (keys.server, *keys.fallback)
    endpoints = [connect]
    if keys.rotation_port is not None and connect.startswith("tcp://"):
        rotation = f"{connect.rsplit(':', 1)[0]}:{keys.rotation_port}"
        if rotation != connect:
            endpoints.append(rotation)
    return [(endpoint, server) for endpoint in endpoints for server in servers]


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
