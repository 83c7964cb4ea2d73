"""The master's end of the transport: one ROUTER socket for every agent and framework.

Why a module of its own: everything here exists because one socket faces many peers, any of
which may be hostile, and none of it applies to a client's DEALER (:mod:`tepui.sdk.dealer`);
what both ends share — reading, sending, batching — is :mod:`tepui.sdk.transport`.

* Each message is checked before the master sees it: its frame count (identity + one payload,
  trap 4, the surplus dropped as read) and, with CurveZMQ, the identity of the key that
  authenticated its connection and whether that key was revoked since the handshake. A peer
  that breaks the rules is cut (:func:`tepui.sdk.curve.cut_connection`) and its key refused for
  a cool-down.
* The undelivered-bytes bound (the multipart half of scenario 33): the decisions are
  :mod:`tepui.sdk.undelivered`'s; this module counts what each connection delivered, watches the
  process's memory and cuts the connections it names.
* Master key rotation (:mod:`tepui.sdk.rotation`): the one socket serves the current key pair on
  its port and a rotation's next pair on the rotation port, and moves its own port to the next
  key on the same listening socket when the rotation finishes.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import zmq

from tepui.sdk.codec import DEFAULT_MAX_BYTES
from tepui.sdk.curve import (
    CurveServer,
    ServerMonitor,
    apply_server,
    cut_connection,
    source_fd,
    start_authenticator,
    user_id,
)
from tepui.sdk.rotation import MasterKeys
from tepui.sdk.transport import Endpoint, common_options
from tepui.sdk.undelivered import Limits, Undelivered, curve_wire_size, tcp_bytes_received

log = logging.getLogger("tepui.transport")

# The undelivered-bytes bound (tepui.sdk.undelivered): the master's resident memory is looked at
# this often, and every connection is checked when it grew by WATCH_GROWTH or every CHECK_EVERY.
# A stream is thus cut within about WATCH_EVERY of growing the process by WATCH_GROWTH, at the
# cost of one small read 50 times a second (the per-connection check costs ~1 µs a connection).
WATCH_EVERY = 0.02
WATCH_GROWTH = 4 << 20
CHECK_EVERY = 0.25


class _Incoming:
    """One message as the ROUTER read it: at most ``max_frames`` frames kept, the rest counted."""

    __slots__ = ("frames", "extra", "identity", "props")

    def __init__(self, frames: list[bytes], extra: int, identity: str | None, props: zmq.Frame | None) -> None:
        self.frames, self.extra, self.identity, self.props = frames, extra, identity, props


LISTEN_BACKLOG = 4096
"""Connections the master's socket lets wait to be accepted (see ``RouterEndpoint``)."""


class RouterEndpoint(Endpoint):
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
        common_options(sock, max_bytes, hwm, linger_ms=0, heartbeat_seconds=heartbeat_seconds)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # After a failover every agent connects to the new master at once. libzmq listens with
        # a backlog of 100: the SYNs beyond it were dropped and retried by the kernel a second
        # later (measured, 1,000 agents: 563 re-registered within 0.4 s, then none for 0.6 s,
        # the rest after the SYN retry; 1.3 s in all). The kernel caps it at somaxconn.
        sock.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
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
        if self._events() & zmq.POLLIN:
            self._drain()
            if self._closed:
                return
        drained = not self._events() & zmq.POLLIN
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
            next_public = wanted[1]  # a rotation port is wanted only with a next key pair
            assert keys.next_secret is not None and keys.rotation_port is not None
            self._set_server_keys(next_public, keys.next_secret)
            try:
                self._sock.bind(wanted[0])
            except zmq.ZMQError as exc:
                log.error("event=master_rotation_port_unavailable endpoint=%s error=%r hint=\"clients given only the "
                          "next key cannot connect until the port is free (or until the rotation is finished)\"",
                          wanted[0], str(exc))
            else:
                self._rotation = wanted
                self._ports.add(keys.rotation_port)
                log.info("event=master_rotation_port_open endpoint=%s next_public_key=%s", wanted[0],
                         next_public.decode())
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
