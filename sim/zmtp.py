"""A ZeroMQ DEALER peer in pure Python (ZMTP 3.1, NULL mechanism) on the asyncio loop.

Why not pyzmq here: libzmq spends two file descriptors per socket (the TCP connection and the
socket's mailbox eventfd), so 10,000 DEALER sockets need 20,000+ descriptors, and this
machine's hard limit is 20,000 (not raisable without CAP_SYS_RESOURCE). Speaking the wire
protocol directly costs one descriptor per agent and no per-socket libzmq buffers. The master
sees an ordinary DEALER: the same greeting, a READY with ``Socket-Type: DEALER`` and the agent's
``Identity`` (its routing id, so ``ROUTER_HANDOVER`` keeps its route across reconnects), the
same single-frame messages, and PONGs to the ROUTER's ZMTP heartbeats.

Mechanisms: NULL (a master started with ``--insecure``) and CURVE (:mod:`tepui.sim.curve`: the
handshake and every frame boxed with libsodium). Every simulated agent uses the same agent key:
the master binds each agent id to the key's principal, and one principal may register many
agents. A master that proposes the other mechanism is reported and refused.

Wire reference: ZMTP 3.1 (rfc.zeromq.org/spec/37): a 64-byte greeting, then frames of
``flags`` (bit 0 MORE, bit 1 LONG, bit 2 COMMAND), a 1- or 8-byte big-endian size, and the body.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable

from tepui.sim.curve import FLAG_COMMAND, FLAG_MORE, CurveClient, CurveError

log = logging.getLogger("tepui.sim.zmtp")

SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
GREETING = SIGNATURE + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
CURVE_GREETING = SIGNATURE + b"\x03\x01" + b"CURVE".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
MORE, LONG, COMMAND = 0x01, 0x02, 0x04
QUEUE_LIMIT = 1000  # messages kept while disconnected, like a DEALER's send HWM
RECONNECT_MIN, RECONNECT_MAX = 0.1, 5.0  # the real transport's RECONNECT_IVL and RECONNECT_IVL_MAX


class ZmtpError(ValueError):
    """The peer broke the protocol (or spoke a mechanism we do not)."""


def frame(body: bytes, flags: int = 0) -> bytes:
    size = len(body)
    if size < 256:
        return bytes((flags, size)) + body
    return bytes((flags | LONG,)) + size.to_bytes(8, "big") + body


def command(name: bytes, data: bytes = b"") -> bytes:
    return frame(bytes((len(name),)) + name + data, COMMAND)


def _property(name: bytes, value: bytes) -> bytes:
    return bytes((len(name),)) + name + len(value).to_bytes(4, "big") + value


def ready(identity: bytes) -> bytes:
    return command(b"READY", _property(b"Socket-Type", b"DEALER") + _property(b"Identity", identity))


def properties(data: bytes) -> dict[str, bytes]:
    """The metadata of a READY command."""
    found, pos = {}, 0
    while pos < len(data):
        size = data[pos]
        name = data[pos + 1:pos + 1 + size].decode("ascii", "replace")
        pos += 1 + size
        length = int.from_bytes(data[pos:pos + 4], "big")
        found[name] = bytes(data[pos + 4:pos + 4 + length])
        pos += 4 + length
    return found


class ZmtpParser:
    """Bytes in, protocol events out: ``("greeting", mechanism, None)``, ``("command", name,
    data)``, ``("message", payload, None)``, ``("bad_frames", count, None)`` for a multi-frame
    message (the master sends one frame per message; more is dropped, as the real transport
    drops it). A frame over ``max_bytes`` raises, as ``MAXMSGSIZE`` makes libzmq disconnect."""

    __slots__ = ("_buffer", "_greeted", "_frames", "_max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._buffer = bytearray()
        self._greeted = False
        self._frames = 0  # frames of a multi-frame message read so far
        self._max_bytes = max_bytes

    def feed(self, data: bytes) -> list[tuple[str, Any, Any]]:
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:
            source = data  # the usual case: whole frames in one read, parsed without a copy
        out: list[tuple[str, Any, Any]] = []
        end = len(source)
        pos = 0
        if not self._greeted:
            if end and source[0] != 0xFF:
                raise ZmtpError("the peer does not speak ZMTP (bad greeting signature)")
            if end < 64:
                if source is data:
                    buffer += data
                return out
            if source[9] != 0x7F or source[10] < 3:
                raise ZmtpError(f"the peer speaks ZMTP {source[10]}.x; ZMTP 3 is needed")
            mechanism = bytes(source[12:32]).rstrip(b"\x00").decode("ascii", "replace")
            out.append(("greeting", mechanism, None))
            self._greeted = True
            pos = 64
        while end - pos >= 2:
            flags = source[pos]
            if flags & LONG:
                if end - pos < 9:
                    break
                size = int.from_bytes(source[pos + 1:pos + 9], "big")
                start = pos + 9
            else:
                size = source[pos + 1]
                start = pos + 2
            if size > self._max_bytes:
                raise ZmtpError(f"a frame of {size} bytes exceeds the {self._max_bytes}-byte limit")
            stop = start + size
            if stop > end:
                break
            body = source[start:stop]
            pos = stop
            if flags & COMMAND:
                length = body[0] if body else 0
                out.append(("command", bytes(body[1:1 + length]), body[1 + length:]))
            elif flags & MORE or self._frames:
                self._frames += 1
                if not flags & MORE:
                    out.append(("bad_frames", self._frames, None))
                    self._frames = 0
            else:
                out.append(("message", body, None))
        if source is data:
            if pos < end:
                buffer += data[pos:]
        elif pos:
            del buffer[:pos]
        return out


@dataclass(frozen=True)
class CurveKeys:
    """Raw 32-byte keys: the master's public key and the simulated agents' key pair."""

    server: bytes
    public: bytes
    secret: bytes


class _Link(asyncio.Protocol):
    """One agent's connection, reused across reconnects."""

    def __init__(self, links: ZmtpLinks, index: int, identity: bytes) -> None:
        self.links, self.index, self.identity = links, index, identity
        self.transport: asyncio.Transport | None = None
        self.parser: ZmtpParser | None = None
        self.queue: list[bytes] = []
        self.up = False  # the handshake is done: messages may go
        self.closed = False
        self.curve: CurveClient | None = None  # per connection: a fresh short-term key each time
        self._more = False  # inside a multi-frame message of the master's (CURVE: flags are boxed)
        self.backoff = RECONNECT_MIN

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.closed:
            transport.close()
            return
        self.transport = transport
        self.parser = ZmtpParser(self.links.max_bytes + 1024)  # as the real transport's MAXMSGSIZE
        self.backoff = RECONNECT_MIN
        self.up = False
        keys = self.links.curve
        if keys is None:
            transport.write(GREETING + ready(self.identity))
            return
        self.curve = CurveClient(keys.server, keys.public, keys.secret,
                                 {"Socket-Type": b"DEALER", "Identity": self.identity})
        transport.write(CURVE_GREETING + frame(self.curve.hello(), COMMAND))

    def _peer_ready(self) -> None:
        """libzmq takes no message before its own READY has gone out (a message frame during the
        handshake is UNEXPECTED_COMMAND and ends the connection): what waited goes now."""
        assert self.transport is not None
        self.up = True
        if self.queue:
            self.transport.write(b"".join(self._frame(payload) for payload in self.queue))
            self.queue.clear()

    def _frame(self, payload: bytes, flags: int = 0) -> bytes:
        if self.curve is None:
            return frame(payload)
        return frame(self.curve.encrypt(payload, flags))

    def send(self, payload: bytes) -> None:
        if self.up:
            assert self.transport is not None
            self.transport.write(self._frame(payload))
        elif not self.closed:
            if len(self.queue) >= QUEUE_LIMIT:
                del self.queue[0]
                self.links.stats["queue_overflow_dropped"] += 1
            self.queue.append(payload)

    def data_received(self, data: bytes) -> None:
        assert self.parser is not None and self.transport is not None
        try:
            events = self.parser.feed(data)
        except ZmtpError as exc:
            self.links.protocol_error(self, str(exc))
            return
        deliver = self.links.on_message
        try:
            for kind, first, second in events:
                if kind == "message":
                    if self.curve is None:
                        deliver(self.index, first)
                    else:
                        self._boxed(first)
                elif kind == "command":
                    self._command(first, second)
                elif kind == "greeting":
                    wanted = "NULL" if self.links.curve is None else "CURVE"
                    if first != wanted:
                        hint = ("give tepui sim the agent keys of a secure master (--keys DIR)" if first == "CURVE"
                                else "this master runs with --insecure: drop --keys")
                        self.links.protocol_error(self, f"the master uses the {first} mechanism: {hint}")
                        return
                elif kind == "bad_frames":
                    self.links.stats["bad_frames"] += 1
                if self.transport is None or self.transport.is_closing():
                    return  # a protocol error ended the connection
        except CurveError as exc:
            self.links.protocol_error(self, f"CURVE: {exc}")

    def _boxed(self, message: Any) -> None:
        """A MESSAGE of a CURVE connection: a frame of the master's, or a heartbeat command."""
        assert self.curve is not None
        flags, body = self.curve.decrypt(message)
        if flags & FLAG_COMMAND:
            length = body[0] if body else 0
            self._command(body[1:1 + length], body[1 + length:])
        elif flags & FLAG_MORE or self._more:
            self._more = bool(flags & FLAG_MORE)
            if not self._more:
                self.links.stats["bad_frames"] += 1
        else:
            self.links.on_message(self.index, body)

    def _command(self, name: bytes, data: Any) -> None:
        if name == b"PING":  # ZMTP 3.1 heartbeat: TTL (2 bytes), then a context to echo
            assert self.transport is not None
            pong = bytes((4,)) + b"PONG" + bytes(data[2:])
            self.transport.write(command(b"PONG", bytes(data[2:])) if self.curve is None
                                 else self._frame(pong, FLAG_COMMAND))
        elif name == b"WELCOME" and self.curve is not None:
            assert self.transport is not None
            self.transport.write(frame(self.curve.welcome(bytes(data)), COMMAND))
        elif name == b"READY":
            data = self.curve.ready(bytes(data)) if self.curve is not None else data
            socket_type = properties(bytes(data)).get("Socket-Type")
            if socket_type != b"ROUTER":
                self.links.protocol_error(self, f"the peer is a {socket_type!r} socket, not the master's ROUTER")
                return
            self._peer_ready()
        elif name == b"ERROR":
            reason = bytes(data[1:1 + data[0]]).decode("utf-8", "replace") if data else ""
            self.links.protocol_error(self, f"the master refused the handshake: {reason}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.parser = None
        self.curve = None
        self._more = False
        self.up = False
        if not self.closed:
            self.links.stats["connections_lost"] += 1
            self.links.reconnect_later(self)


def _resolve(address: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` resolved once: 10,000 connections must not each ask the resolver (a
    thread each)."""
    host, _, port = address[len("tcp://"):].rpartition(":")
    resolved = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)[0][4]
    return (str(resolved[0]), int(resolved[1]))


class ZmtpLinks:
    """The agents' connections: ``open(i)`` connects agent i (and keeps reconnecting with
    backoff, as a DEALER does), ``send(i, payload)`` sends one single-frame message (queued
    while disconnected), ``on_message(i, payload)`` receives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str, identities: Callable[[int], bytes],
                 on_message: Callable[[int, Any], None], max_bytes: int, curve: CurveKeys | None = None) -> None:
        self._address: tuple[str, int] = _resolve(address)
        self._loop = loop
        self._identities = identities
        self.on_message = on_message
        self.max_bytes = max_bytes
        self.curve = curve
        self._links: dict[int, _Link] = {}
        self.stats: dict[str, int] = {"bad_frames": 0, "connections_lost": 0, "protocol_errors": 0,
                                      "queue_overflow_dropped": 0}
        self._errors_logged: set[str] = set()

    def open(self, index: int) -> None:
        link = self._links[index] = _Link(self, index, self._identities(index))
        self._connect(link)

    def move(self, address: str, server_key: bytes | None) -> None:
        """Connections opened (or reconnecting) from now on go to ``address``, a new leading
        master, expecting ``server_key`` (Z85) when given; :meth:`reopen` moves an open one."""
        self._address = _resolve(address)
        if self.curve is not None and server_key is not None:
            from tepui.sim.curve import z85_key

            self.curve = CurveKeys(z85_key(server_key), self.curve.public, self.curve.secret)

    def reopen(self, index: int) -> None:
        """Agent ``index``'s connection, dropped at once (what waited in it was for a master that
        no longer leads) and opened again where :meth:`move` said."""
        link = self._links.pop(index, None)
        if link is not None:
            link.closed = True
            if link.transport is not None:
                link.transport.abort()
        self.open(index)

    def _connect(self, link: _Link) -> None:
        if link.closed:
            return
        host, port = self._address
        task = self._loop.create_task(self._loop.create_connection(lambda: link, host, port))
        task.add_done_callback(lambda done: self._connected(link, done))

    def _connected(self, link: _Link, done: asyncio.Task[Any]) -> None:
        if done.cancelled() or done.exception() is None:
            return
        self.reconnect_later(link)

    def reconnect_later(self, link: _Link) -> None:
        delay, link.backoff = link.backoff, min(link.backoff * 2, RECONNECT_MAX)
        self._loop.call_later(delay, self._connect, link)

    def protocol_error(self, link: _Link, message: str) -> None:
        self.stats["protocol_errors"] += 1
        if message not in self._errors_logged:  # one line, not one per agent
            self._errors_logged.add(message)
            log.error("event=zmtp_protocol_error agent_index=%d error=%r action=reconnecting", link.index, message)
        if link.transport is not None:
            link.transport.abort()

    def send(self, index: int, payload: bytes) -> None:
        self._links[index].send(payload)

    def close(self, index: int) -> None:
        link = self._links.pop(index, None)
        if link is not None:
            link.closed = True
            if link.transport is not None:
                link.transport.close()  # after what is buffered has been written

    def close_all(self) -> None:
        for index in list(self._links):
            self.close(index)
