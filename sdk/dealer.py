"""An agent's or a framework's end of the transport: one DEALER socket to the master.

Why a module of its own: a client's problems are about reaching its one peer, not policing
many (that is the master's ROUTER, :mod:`tepui.sdk.router`); what both ends share — reading,
sending, batching — is :mod:`tepui.sdk.transport`.

* A fixed routing id per endpoint, so that a reconnect keeps the master's route to us.
* Noticing that the connection came back after a loss (ZeroMQ reconnects and says nothing; a
  restarted master has forgotten us, so the owner re-registers or re-subscribes at once).
* Trying again when the master refused our key (libzmq does not: a refusal is final to it).
* During a master key rotation: trying each (endpoint, master key) candidate in turn
  (:func:`tepui.sdk.rotation.master_candidates`), on a new socket per attempt and with
  ``ZMQ_IMMEDIATE``, so that what is sent meanwhile waits in our own queue instead of being
  lost with a failing attempt.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any, Callable

import zmq

from tepui.sdk.codec import DEFAULT_MAX_BYTES
from tepui.sdk.curve import HandshakeLog, SocketMonitor, apply_client
from tepui.sdk.keys import ClientKeys
from tepui.sdk.rotation import master_candidates
from tepui.sdk.transport import Endpoint, common_options, stop_reading

log = logging.getLogger("tepui.transport")

REFUSED_RETRY_SECONDS = 5.0  # a DEALER whose key the master refused tries again this often


class DealerEndpoint(Endpoint):
    """An agent's or framework's socket to the master. The routing id is fixed per endpoint so
    that a reconnect (after a network blip) keeps the master's route to us (``ROUTER_HANDOVER``).
    With ``curve`` (the client key pair and the master's public key) the link is encrypted and
    the master authenticates us; a refused handshake is logged (the send itself never fails).

    ``connect`` None: the master is not known yet (a client following a ``zk://`` address
    before any master serves); nothing connects until :meth:`retarget`, and what is sent
    meanwhile waits in our own queue (a DEALER without a peer refuses every send)."""

    def __init__(
        self,
        reactor: Any,
        connect: str | None,
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
        self._candidates = master_candidates(connect, curve) if connect is not None else []
        sock = self._new_socket(None)
        super().__init__(reactor, sock, on_batch_end, max_bytes)
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self.handshakes = HandshakeLog("client")
        self._connect_to = connect or ""
        self._candidate = 0
        self._monitor: _ConnectionMonitor | None = self._watch(sock, lost=False)
        self._retry: Any = None
        if connect is not None:
            sock.connect(connect)
        self._start_reading()

    def _new_socket(self, server: bytes | None) -> zmq.Socket:
        """A DEALER with our options and routing id (and ``server`` as the master key, if given).
        A client with several candidates (a rotation) sets ``ZMQ_IMMEDIATE``: a message is
        handed to libzmq only once a handshake succeeded, so what is sent while an attempt
        fails waits in our own queue and goes to the candidate that works, instead of sitting
        in the failing attempt's pipe (lost with it when we move on)."""
        sock = self._context.socket(zmq.DEALER)
        common_options(sock, self._max_bytes, self._hwm, linger_ms=1000)
        sock.setsockopt(zmq.ROUTING_ID, self.routing_id)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        if self._curve is not None and (server is not None or self._curve.server):
            apply_client(sock, self._curve)  # an empty master key: one published by the leader comes with retarget
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
        stop_reading(self._loop, self._fd)
        old.close(linger=0)  # nothing of ours in it (ZMQ_IMMEDIATE): our queue holds what waits
        self._sock, self._fd = sock, sock.fileno()
        sock.connect(self._connect_to)
        self._start_reading()

    def retarget(self, connect: str, server_key: bytes | None = None) -> None:
        """Moves to another master — the new leader a ``zk://`` client was told of — on a new
        socket with the same routing id, its candidates (``server_key`` replacing the configured
        master key when given; a rotation's fallback keys and port still apply) tried as at start.
        Nothing happens when the target is the one in use.

        A new socket rather than ``disconnect()``/``connect()``, for the reasons
        :meth:`_next_candidate` gives: the old attempt would linger, reconnecting to the dead or
        standby master, and its monitor events would mix with the new ones. What sat in the old
        socket's pipe for the old master is lost with it (``linger=0``), and that is fine: it
        was for a master that is dead or no longer leads (a standby only answers errors), and
        the owner re-registers or re-subscribes at once after this call — an agent resends
        every unacknowledged status update on re-registration, a driver re-subscribes, is
        reconciled, and repeats its kills. What waits in our own queue (not yet taken by
        libzmq) is kept and goes to the new master."""
        if self._closed:
            return
        keys = self._curve
        if keys is not None and server_key is not None and server_key != keys.server:
            keys = replace(keys, server=server_key)
        candidates = master_candidates(connect, keys)
        target = candidates[0] if candidates else (connect, None)
        if self._candidates and self.master == target or not self._candidates and self._connect_to == connect:
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._candidates, self._candidate = candidates, 0
        self._connect_to, server = target
        old, old_monitor = self._sock, self._monitor
        sock = self._new_socket(server)  # before the old one closes: the monitor's name comes from the fd
        self._monitor = self._watch(sock, lost=False)  # the owner registers anew: no reconnect to report
        if old_monitor is not None:
            old_monitor.close()
        stop_reading(self._loop, self._fd)
        old.close(linger=0)
        self._sock, self._fd = sock, sock.fileno()
        sock.connect(self._connect_to)
        self._start_reading()
        log.info("event=master_retargeted endpoint=%s", self._connect_to)

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
