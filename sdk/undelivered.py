"""A bound on what one connection can make the master's libzmq hold: bytes received but not
yet delivered as whole messages (scenario 33, the multipart half).

Why it is needed: ``MAXMSGSIZE`` caps each *frame*, and libzmq counts its high-water mark in
*whole messages* — the frames of a message whose last frame has not come yet are written to the
socket's pipe without limit and only become readable once it ends. A key holder that streams
one endless multipart message (a hand-written ZMTP peer: libzmq itself sends nothing of a
message before its end) grows the master's memory until the process dies, and the master never
sees a single frame of it.

What is measured: for each TCP connection on the master's ports, the bytes the kernel received
on it (``tcpi_bytes_received`` of ``TCP_INFO``) minus the bytes of the whole messages the master
has read from it (each message's ``SRCFD`` names its connection; its CURVE wire size is exact:
see :func:`curve_wire_size`). What is left is the connection's handshake, control commands
(ZMTP heartbeats) and what it has sent that is not yet a whole message — what libzmq holds for
it. Over :attr:`Limits.per_connection` (two largest messages and a margin) the connection is
cut; the master's socket must be drained first, so that whole messages waiting to be read are
never counted against their sender (while it is not, only :attr:`Limits.ceiling` applies).

Control commands are never delivered, so they would add up on a long-lived connection: a
connection that delivered messages since the last check and holds less than
:attr:`Limits.forgive` is taken as up to date (its count starts again from zero). An idle
connection's heartbeats reach the limit only after days (about 16 bytes a second for Tepui's
own clients); it is then cut like any other, but its key is refused for a cool-down only when
the bytes came fast (:attr:`Limits.streaming_rate`): a stream, not heartbeats. A connection
that never delivered a message has no known key, so it is only cut (its reconnect starts from
zero again, which bounds its memory all the same).

This module is the pure part (decisions on numbers, with ``now`` passed in); reading
``TCP_INFO`` is :func:`tcp_bytes_received`, and the transport does the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
from dataclasses import dataclass, field

# struct tcp_info (linux/tcp.h): tcpi_bytes_received is the u64 at byte 128 (since Linux 4.1);
# tcpi_bytes_acked is the one at 120. Checked against this kernel's header and a live socket.
TCP_INFO_BYTES_RECEIVED = 128
_TCP_INFO_LEN = TCP_INFO_BYTES_RECEIVED + 8

CURVE_FRAME_OVERHEAD = 33  # "\x07MESSAGE" (8) + nonce (8) + MAC (16) + flags (1), per frame


def curve_wire_size(payload: int) -> int:
    """Bytes one frame of ``payload`` bytes takes on a CURVE connection: the MESSAGE command
    around it, in a ZMTP frame with a 1-byte size up to 255 bytes of body, else an 8-byte one."""
    body = payload + CURVE_FRAME_OVERHEAD
    return body + (2 if body < 256 else 9)


@dataclass(frozen=True)
class Limits:
    per_connection: int  # undelivered bytes a connection may hold once the socket is drained
    ceiling: int  # ... at any time, even while whole messages wait to be read
    forgive: int = 64 * 1024  # below this, a connection that delivered is taken as up to date
    streaming_rate: float = 256 * 1024  # bytes/s above which a cut also refuses the key

    @classmethod
    def for_message_size(cls, max_bytes: int) -> Limits:
        """Two largest frames (one whole message waiting, one arriving) and 1 MiB for the
        handshake, heartbeats and the kernel's buffer; the ceiling four times that."""
        largest = curve_wire_size(max_bytes + 1024)
        per_connection = 2 * largest + (1 << 20)
        return cls(per_connection=per_connection, ceiling=4 * per_connection)


@dataclass(frozen=True)
class Cut:
    """A connection to cut: its descriptor, what it held, and whose it is (if known)."""

    fd: int
    undelivered: int
    identity: str | None
    block: bool  # refuse the key for a cool-down too (it was streaming)


@dataclass
class _Connection:
    base: int = 0  # bytes_received already accounted for (delivered, forgiven)
    identity: str | None = None
    clean_at: float = 0.0  # last time it held less than Limits.forgive


@dataclass
class Undelivered:
    """Per-connection accounting. The transport reports connections (``accepted``/``closed``,
    from socket monitor events) and what it read (``delivered``, per message); ``check`` is
    given each connection's received byte count and says which to cut."""

    limits: Limits
    connections: dict[int, _Connection] = field(default_factory=dict)
    _credit: dict[int, int] = field(default_factory=dict)  # fd → bytes delivered since the last check

    def accepted(self, fd: int, now: float) -> None:
        # A descriptor number comes back after a close: whatever is pending for it now belongs
        # to this connection (crediting a new connection a little too much is the safe error).
        self.connections[fd] = _Connection(clean_at=now)

    def closed(self, fd: int) -> None:
        self.connections.pop(fd, None)

    def delivered(self, fd: int, wire_bytes: int, identity: str | None) -> None:
        """The hot path: one message read from connection ``fd``."""
        self._credit[fd] = self._credit.get(fd, 0) + wire_bytes
        if identity is not None:
            connection = self.connections.get(fd)
            if connection is not None:
                connection.identity = identity

    def check(self, received: dict[int, int], now: float, drained: bool) -> list[Cut]:
        """``received``: bytes received so far per connection (a connection missing from it
        could not be read and is skipped). ``drained``: the socket had no whole message left
        to read, so what a connection holds is only what it has not finished sending."""
        credit, self._credit = self._credit, {}
        cuts = []
        limit = self.limits.per_connection if drained else self.limits.ceiling
        for fd, connection in self.connections.items():
            delivered = credit.get(fd, 0)
            connection.base += delivered
            total = received.get(fd)
            if total is None:
                continue
            held = total - connection.base
            if held <= self.limits.forgive:
                if delivered:
                    connection.base = total  # up to date: heartbeats and handshake forgotten
                connection.clean_at = now
                continue
            if held > limit:
                rate = held / max(now - connection.clean_at, 1e-3)
                cuts.append(Cut(fd, held, connection.identity, block=rate > self.limits.streaming_rate))
        for cut in cuts:
            self.connections.pop(cut.fd, None)
        return cuts

    def held(self, received: dict[int, int]) -> dict[int, int]:
        """What each connection holds now (for metrics and tests), credits not yet applied."""
        return {fd: received[fd] - c.base - self._credit.get(fd, 0) for fd, c in self.connections.items()
                if fd in received}


# --- reading TCP_INFO -------------------------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_getsockopt = _libc.getsockopt
_getsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
_getsockopt.restype = ctypes.c_int
_buffer = ctypes.create_string_buffer(_TCP_INFO_LEN)
_length = ctypes.c_uint32()


def tcp_bytes_received(fd: int) -> int | None:
    """``tcpi_bytes_received`` of the TCP socket ``fd``, or None (not a TCP socket, closed, or
    a kernel older than 4.1). A plain ``getsockopt`` on the descriptor: no dup, no socket
    object, about a microsecond — it runs for every connection several times a second."""
    _length.value = _TCP_INFO_LEN
    if _getsockopt(fd, socket.IPPROTO_TCP, socket.TCP_INFO, _buffer, ctypes.byref(_length)) != 0:
        return None
    if _length.value < _TCP_INFO_LEN:
        return None
    return int.from_bytes(_buffer.raw[TCP_INFO_BYTES_RECEIVED:_TCP_INFO_LEN], "little")
