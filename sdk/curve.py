"""CurveZMQ for the transport: the ZAP authenticator, the key gate, handshake monitors and the
forced disconnect (DESIGN §7; RELIABILITY traps 4-7).

* **ZAP before bind, with a named domain.** CURVE without a ZAP handler authenticates nobody
  (any key completes the handshake), so the master starts a ZAP handler on its context *before*
  ``bind()`` and sets ``ZAP_DOMAIN`` to :data:`ZAP_DOMAIN`; the handler is registered for that
  exact domain (in pyzmq, ``'*'`` does not match a named one).
* **Identity from the key.** The handler answers with the allow-list *name* of the key as the
  ZAP user id; every message then carries it as its ``User-Id`` property, which the transport
  hands to the master (trap 7). A routing id is whatever the peer chose and proves nothing.
* **Revocation takes effect at once.** ZAP runs only at the handshake, so the transport also
  checks each message's user id against the current allow list; a revoked key's connection is
  cut and its next handshake refused.
* **Handshake failures are visible.** A refused client's ``send()`` still succeeds (trap 6);
  only socket monitor events say what happened, so both sides log them (rate limited).
* **Disconnecting one ROUTER peer.** libzmq has no stable API for it (``zmq_disconnect_peer``
  is draft-only and not for ROUTER), so :func:`cut_connection` shuts the TCP connection down
  underneath libzmq, found through the message's ``SRCFD`` property; libzmq then tears the
  session down and frees what it had buffered. The key is refused for a cool-down so that the
  peer's automatic reconnect does not simply resume.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Collection

import zmq
from zmq.auth.thread import ThreadAuthenticator

from tepui.sdk.keys import AllowList, ClientKeys, KeyEntry, KeyStoreError, read_allow_list

log = logging.getLogger("tepui.transport")

ZAP_DOMAIN = "tepui"
VIOLATION_COOLDOWN = 30.0  # seconds a key that broke the frame limits is refused
LOG_EVERY = 10.0  # seconds between repeated handshake-failure lines of one kind

_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED)


class KeyGate:
    """The allow list as the master sees it right now, shared by the ZAP thread (who may
    connect) and the reactor thread (who may still talk). The list is replaced whole on reload
    (an attribute assignment, atomic under the GIL), so no lock is needed to read it."""

    def __init__(self, allow_list_path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = allow_list_path
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._blocked: dict[str, float] = {}  # name → refused until (clock)
        self._lock = threading.Lock()
        self.allow = AllowList()
        # The master's own key pairs (tepui.sdk.rotation), watched with the allow list: whoever
        # serves them (the ROUTER) sets on_master_keys and is told when they change.
        self.store = os.path.dirname(os.path.abspath(allow_list_path))
        self.on_master_keys: Callable[[Any], None] | None = None
        self._keys_stamp: Any = None
        self.reload(force=True)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def check_master_keys(self) -> None:
        """Tells ``on_master_keys`` what the master should serve, if the store's master key
        files changed since the last call (a rotation started or finished)."""
        from tepui.sdk import rotation

        if self.on_master_keys is None:
            return
        stamp = rotation.stamp(self.store)
        if stamp == self._keys_stamp:
            return
        try:
            keys = rotation.served(self.store)
        except KeyStoreError as exc:
            log.error("event=master_keys_reload_failed error=%r action=\"serving the keys as before\"", str(exc))
            return
        self._keys_stamp = stamp
        self.on_master_keys(keys)

    def reload(self, force: bool = False) -> bool:
        """Reads the allow list again if its file changed; True if it did. A broken file keeps
        the previous list (and says so): a typo must not lock every agent out, nor let anyone in.
        The master's key pairs are looked at too (:meth:`check_master_keys`)."""
        try:
            self.check_master_keys()
        except Exception:  # a bug here must not stop the allow list from being read
            log.exception("event=master_keys_reload_failed")
        stamp = self._file_stamp()
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            allow = read_allow_list(self.path)
        except KeyStoreError as exc:
            if force:
                raise
            log.error("event=allow_list_reload_failed error=%r action=\"keeping the previous list\"", str(exc))
            return False
        before = {e.name for e in self.allow.entries if not e.revoked}
        self.allow = allow
        after = {e.name for e in allow.entries if not e.revoked}
        if not force:
            log.info("event=allow_list_reloaded path=%s keys=%d added=%s removed_or_revoked=%s", self.path,
                     len(after), ",".join(sorted(after - before)) or "-", ",".join(sorted(before - after)) or "-")
        return True

    def admit(self, public_key: bytes) -> KeyEntry | None:
        """ZAP: the entry of a key that may connect now, else None (logged with the reason)."""
        text = public_key.decode("ascii", "replace")
        entry = self.allow.active(text)
        if entry is None:
            known = self.allow.by_key.get(text)
            reason = "revoked" if known is not None else "unknown_key"
            log.warning("event=curve_key_refused key=%s reason=%s name=%s hint=\"issue a key with `tepui certs "
                        "issue` and give it to the client\"", text, reason, known.name if known else "-")
            return None
        with self._lock:
            until = self._blocked.get(entry.name)
            if until is not None and until > self._clock():
                log.warning("event=curve_key_refused key=%s name=%s reason=cooling_down_after_violation", text,
                            entry.name)
                return None
            self._blocked.pop(entry.name, None)
        return entry

    def name_of(self, public_key: bytes) -> str:
        entry = self.allow.active(public_key.decode("ascii", "replace"))
        return entry.name if entry is not None else ""

    def current(self, name: str) -> KeyEntry | None:
        """The entry of a connected peer's key if it may still talk (not revoked meanwhile)."""
        entry = self.allow.named(name)
        return entry if entry is not None and not entry.revoked else None

    def block(self, name: str, seconds: float = VIOLATION_COOLDOWN) -> None:
        with self._lock:
            self._blocked[name] = self._clock() + seconds
            if len(self._blocked) > 10_000:  # bounded: forget the entries whose cool-down ended
                now = self._clock()
                self._blocked = {k: v for k, v in self._blocked.items() if v > now}


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler, answering with the key's allow-list name as the user id."""

    def __init__(self, context: zmq.Context, gate: KeyGate) -> None:
        super().__init__(context, log=logging.getLogger("tepui.zap"))
        self.gate = gate

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.gate.name_of(zmq.utils.z85.encode(client_public_key))


class _Provider:
    def __init__(self, gate: KeyGate) -> None:
        self.gate = gate

    def callback(self, domain: str, key: bytes) -> bool:
        return domain == ZAP_DOMAIN and self.gate.admit(key) is not None


@dataclass(frozen=True)
class CurveServer:
    """What a binding endpoint needs for CURVE: its key pair and the gate."""

    public: bytes
    secret: bytes
    gate: KeyGate


def start_authenticator(context: zmq.Context, gate: KeyGate) -> ThreadAuthenticator:
    """Runs the ZAP handler for :data:`ZAP_DOMAIN`. Call before binding the socket."""
    auth = _Authenticator(context, gate)
    auth.start()
    auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=_Provider(gate))
    return auth


def apply_server(sock: zmq.Socket, curve: CurveServer) -> None:
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())


def apply_client(sock: zmq.Socket, keys: ClientKeys) -> None:
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


def cut_connection(fd: int, bound_ports: Collection[int]) -> bool:
    """Shuts down the TCP connection behind ``fd`` (a message's ``SRCFD``), if it still is one
    of ours: a connected TCP socket whose local port is a port we bound. (The fd could have
    been closed and reused between the message and now; the port check keeps us from touching
    anything but one of our own peers, and a wrongly cut peer merely reconnects.)"""
    if fd < 0 or not bound_ports:
        return False
    try:
        dup = os.dup(fd)
    except OSError:
        return False
    try:
        with socket.socket(fileno=dup) as sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                return False
            if sock.getsockname()[1] not in bound_ports:
                return False
            sock.shutdown(socket.SHUT_RDWR)
            return True
    except OSError:
        return False


class HandshakeLog:
    """Turns handshake monitor events into log lines, at most one per kind every
    :data:`LOG_EVERY` seconds (a refused client retries for ever)."""

    def __init__(self, side: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.side, self._clock = side, clock
        self._last: dict[int, float] = {}
        self._suppressed: dict[int, int] = {}
        self.failures = 0
        self.last_failure: str | None = None

    def event(self, event: int, value: int, endpoint: bytes) -> None:
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return
        self.failures += 1
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            reason = "key_refused"
            hint = ("the master does not accept this client key (unknown or revoked): get one from "
                    "`tepui certs issue`, or run `tepui up` again for a local cluster" if self.side == "client"
                    else "a client presented a key the allow list does not accept (see event=curve_key_refused)")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            reason = "mechanism_mismatch"
            hint = ("one side uses CURVE and the other does not: give this client the cluster's keys "
                    "($TEPUI_CONFIG or ~/.config/tepui/config.yaml, written by `tepui up`), or start the master "
                    "with --insecure" if self.side == "client"
                    else "a client without CURVE keys tried to connect; clients need the keys `tepui up` or "
                    "`tepui certs issue` writes")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            reason = "cryptographic_error"
            hint = ("a client's CURVE handshake failed: it does not have this master's public key (give it the "
                    "master.key of this key store, or a fresh client configuration)")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            reason = f"protocol_error_{value:#x}"
            hint = ("the peer speaks another protocol or uses the wrong master public key" if self.side == "client"
                    else "a client failed the CURVE handshake (wrong master public key?)")
        else:
            reason = "handshake_aborted"
            hint = (f"the master ended the handshake (errno {value}): with CURVE this usually means the master "
                    "public key this client has is not the master's; re-copy master.key or the client configuration"
                    if self.side == "client" else f"a handshake ended early (errno {value})")
        self.last_failure = reason
        now = self._clock()
        if now - self._last.get(event, -LOG_EVERY * 2) < LOG_EVERY:
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        self._last[event] = now
        again = self._suppressed.pop(event, 0)
        log.error("event=handshake_failed side=%s endpoint=%s reason=%s repeated=%d hint=%r", self.side,
                  endpoint.decode(errors="replace"), reason, again, hint)


class SocketMonitor:
    """A socket's monitor events, read on the reactor's loop: subclasses say what an event means
    (``on_event``). The monitor socket's FD is edge-triggered like every ZeroMQ FD, so each
    wake-up drains every event."""

    def __init__(self, loop: Any, sock: zmq.Socket, events: int) -> None:
        self._loop = loop
        self._sock = sock
        self._events = sock.get_monitor_socket(events)
        self._fd = self._events.getsockopt(zmq.FD)
        self._closed = False
        loop.add_reader(self._fd, self._drain)
        loop.call_soon(self._drain)

    def on_event(self, event: int, value: int, endpoint: bytes) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        from zmq.utils.monitor import parse_monitor_message

        while not self._closed:
            try:
                message = parse_monitor_message(self._events.recv_multipart(zmq.NOBLOCK))
            except (zmq.Again, zmq.ZMQError):
                return
            try:
                self.on_event(message["event"], message["value"], message["endpoint"])
            except Exception:  # a handler bug must not kill the read loop
                log.exception("event=monitor_handler_failed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.remove_reader(self._fd)
        except Exception:
            pass
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._events.close(linger=0)


class ServerMonitor(SocketMonitor):
    """The binding socket's monitor: logs failed handshakes (who was refused, and why), and
    says which connections come and go (``on_accepted(fd)``, ``on_disconnected(fd)``: the
    monitor events' value is the connection's descriptor), for the undelivered-bytes bound."""

    def __init__(self, loop: Any, sock: zmq.Socket, on_accepted: Callable[[int], None] | None = None,
                 on_disconnected: Callable[[int], None] | None = None) -> None:
        self.handshakes = HandshakeLog("server")
        self._on_accepted, self._on_disconnected = on_accepted, on_disconnected
        super().__init__(loop, sock, _HANDSHAKE_EVENTS | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)

    def on_event(self, event: int, value: int, endpoint: bytes) -> None:
        if event == zmq.EVENT_ACCEPTED:
            if self._on_accepted is not None:
                self._on_accepted(value)
        elif event == zmq.EVENT_DISCONNECTED:
            if self._on_disconnected is not None:
                self._on_disconnected(value)
        else:
            self.handshakes.event(event, value, endpoint)


def user_id(frame: zmq.Frame) -> str | None:
    """The ZAP user id of the connection a frame came on (None without ZAP)."""
    try:
        # bytes, not str: pyzmq encodes a str key to these same bytes, and types get(bytes) as
        # the str property it is (get(str) may be an int option, for a type checker)
        return frame.get(b"User-Id") or None
    except zmq.ZMQError:
        return None


def source_fd(frame: zmq.Frame) -> int:
    try:
        return int(frame.get(zmq.SRCFD))
    except (zmq.ZMQError, TypeError, ValueError):
        return -1
