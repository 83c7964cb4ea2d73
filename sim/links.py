"""The simulated agents' connections to the master: one DEALER per agent, two ways.

* ``zmq``: a pyzmq DEALER per agent in one context (``MAX_SOCKETS`` raised from libzmq's
  default of 1023), read the way ``tepui.sdk.transport`` reads (the edge-triggered FD on the
  asyncio loop, drained with NOBLOCK receives). libzmq costs two file descriptors per socket.
* ``zmtp``: the same protocol spoken in Python (:mod:`tepui.sim.zmtp`), one descriptor per
  agent: what lets 10,000 agents fit under a 20,000-descriptor limit.

``choose_transport`` picks ``zmq`` when the descriptor limit allows it and ``zmtp`` otherwise.
Both speak CURVE when given keys (``keys``: the agent key every simulated agent uses).
No ZMTP heartbeats are set on these DEALERs: the master's application pings prove liveness,
and 10,000 heartbeat timers would only add load.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
from dataclasses import replace
from typing import Any, Callable, Protocol

import zmq

from tepui.sdk.curve import apply_client
from tepui.sdk.keys import ClientKeys
from tepui.sim.zmtp import CurveKeys, ZmtpLinks

log = logging.getLogger("tepui.sim.links")

DRAIN_BATCH = 100  # messages read from one socket per wake-up before the others get a turn
SEND_HWM = 1000
SPARE_FDS = 64  # the reactor, the log, the ready file, DNS...


class Links(Protocol):
    stats: dict[str, int]

    def open(self, index: int) -> None: ...
    def move(self, address: str, server_key: bytes | None) -> None: ...
    def reopen(self, index: int) -> None: ...
    def send(self, index: int, payload: bytes) -> None: ...
    def close(self, index: int) -> None: ...
    def close_all(self) -> None: ...


def raise_fd_limit() -> int:
    """Raises the soft descriptor limit to the hard one; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def fds_needed(transport: str, agents: int) -> int:
    return (2 if transport == "zmq" else 1) * agents + SPARE_FDS


def choose_transport(requested: str, agents: int, fd_limit: int) -> str:
    """``auto``: libzmq when its two descriptors per agent fit, else the Python ZMTP peer.
    An explicit choice that cannot fit is refused with what to do about it."""
    if requested == "auto":
        return "zmq" if fds_needed("zmq", agents) <= fd_limit else "zmtp"
    needed = fds_needed(requested, agents)
    if needed > fd_limit:
        hint = " or --transport zmtp (one per agent)" if requested == "zmq" else ""
        raise ValueError(f"{agents} agents over {requested} need about {needed} file descriptors but this process "
                         f"may open {fd_limit}: raise `ulimit -n`, use fewer --agents{hint}")
    return requested


class ZmqLinks:
    def __init__(self, loop: asyncio.AbstractEventLoop, address: str, identities: Callable[[int], bytes],
                 on_message: Callable[[int, Any], None], max_bytes: int, agents: int,
                 keys: ClientKeys | None = None) -> None:
        self._loop = loop
        self._keys = keys
        self._address = address
        self._identities = identities
        self._on_message = on_message
        self._max_bytes = max_bytes
        self._context = zmq.Context(io_threads=1)
        self._context.set(zmq.MAX_SOCKETS, agents + SPARE_FDS)
        self._sockets: dict[int, zmq.Socket] = {}
        self._fds: dict[int, int] = {}
        self._connected: dict[int, tuple[str, bytes | None]] = {}  # where each socket connected, with which key
        self._pending: dict[int, collections.deque[bytes]] = {}
        self._flush_scheduled = False
        self.stats: dict[str, int] = {"bad_frames": 0, "queue_overflow_dropped": 0}

    def open(self, index: int) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 500)  # long enough for UNREGISTER_AGENT on the way out
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.setsockopt(zmq.RCVHWM, SEND_HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_bytes + 1024)
        sock.setsockopt(zmq.ROUTING_ID, self._identities(index))
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        if self._keys is not None:
            apply_client(sock, self._keys)
        sock.connect(self._address)
        self._connected[index] = (self._address, self._server())
        self._sockets[index] = sock
        fd = self._fds[index] = int(sock.getsockopt(zmq.FD))
        self._loop.add_reader(fd, self._on_fd, index)
        self._loop.call_soon(self._drain, index)

    def move(self, address: str, server_key: bytes | None) -> None:
        """Connections opened from now on go to ``address`` (a new leading master), expecting
        ``server_key`` (Z85) when given; :meth:`reopen` moves an open one."""
        self._address = address
        if self._keys is not None and server_key is not None and server_key != self._keys.server:
            self._keys = replace(self._keys, server=server_key)

    def reopen(self, index: int) -> None:
        """Agent ``index``'s connection moved where :meth:`move` said, on the same socket:
        disconnected without lingering (what waited in it was for a master that no longer
        leads), then connected anew. Not close-and-open: libzmq frees a closed socket's slot
        only later, on its reaper thread, and 1,000 agents reopening at once then ran into
        ``MAX_SOCKETS`` ("Too many open files"). A simulated agent has no socket monitor whose
        events could mix the two attempts (the reason ``DealerEndpoint.retarget`` does take a
        new socket)."""
        sock = self._sockets.get(index)
        if sock is None:
            self.open(index)
            return
        previous = self._connected.get(index)
        if previous == (self._address, self._server()):
            return
        sock.setsockopt(zmq.LINGER, 0)
        if previous is not None:
            try:
                sock.disconnect(previous[0])
            except zmq.ZMQError:
                pass  # already gone
        sock.setsockopt(zmq.LINGER, 500)
        if self._keys is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self._keys.server)
        sock.connect(self._address)
        self._connected[index] = (self._address, self._server())

    def _server(self) -> bytes | None:
        return self._keys.server if self._keys is not None else None

    def _on_fd(self, index: int) -> None:
        sock = self._sockets.get(index)
        if sock is None:
            return
        events = int(sock.getsockopt(zmq.EVENTS))
        if events & zmq.POLLOUT and self._pending.get(index):
            self._flush_one(index)
        if events & zmq.POLLIN:
            self._drain(index)

    def _drain(self, index: int) -> None:
        sock = self._sockets.get(index)
        if sock is None:
            return
        for _ in range(DRAIN_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 1:
                self.stats["bad_frames"] += 1
                continue
            self._on_message(index, frames[0])
            if index not in self._sockets:
                return  # closed by what the message caused
        self._loop.call_soon(self._drain, index)  # more may wait; let the other agents have a turn

    def send(self, index: int, payload: bytes) -> None:
        sock = self._sockets.get(index)
        if sock is None:
            return
        pending = self._pending.get(index)
        if pending:
            self._queue(index, payload)
            return
        try:
            sock.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            self._queue(index, payload)
        # A send can swallow the FD's edge: look for input we would otherwise not be woken for.
        if int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self._loop.call_soon(self._drain, index)

    def _queue(self, index: int, payload: bytes) -> None:
        pending = self._pending.setdefault(index, collections.deque())
        if len(pending) >= SEND_HWM:
            pending.popleft()
            self.stats["queue_overflow_dropped"] += 1
        pending.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_later(0.05, self._flush_all)

    def _flush_one(self, index: int) -> None:
        sock, pending = self._sockets.get(index), self._pending.get(index)
        while sock is not None and pending:
            try:
                sock.send(pending[0], zmq.NOBLOCK)
            except zmq.Again:
                return
            pending.popleft()
        self._pending.pop(index, None)

    def _flush_all(self) -> None:
        self._flush_scheduled = False
        for index in list(self._pending):
            self._flush_one(index)
        if self._pending:
            self._flush_scheduled = True
            self._loop.call_later(0.05, self._flush_all)

    def close(self, index: int) -> None:
        sock = self._sockets.pop(index, None)
        if sock is None:
            return
        fd = self._fds.pop(index)
        self._connected.pop(index, None)
        try:
            self._loop.remove_reader(fd)
        except Exception:  # the loop is already closing
            pass
        self._pending.pop(index, None)
        sock.close()

    def close_all(self) -> None:
        for index in list(self._sockets):
            self.close(index)
        self._context.term()


def make_links(transport: str, loop: asyncio.AbstractEventLoop, address: str, identities: Callable[[int], bytes],
               on_message: Callable[[int, Any], None], max_bytes: int, agents: int,
               keys: ClientKeys | None = None) -> Links:
    if transport == "zmq":
        return ZmqLinks(loop, address, identities, on_message, max_bytes, agents, keys)
    curve = None
    if keys is not None:
        from tepui.sim.curve import z85_key

        curve = CurveKeys(z85_key(keys.server), z85_key(keys.public), z85_key(keys.secret))
    return ZmtpLinks(loop, address, identities, on_message, max_bytes, curve)
