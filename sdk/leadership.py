"""Leader election and leader following on ZooKeeper, the way Mesos does it, bridged to Twisted.

Contenders — masters, and the instances of an HA framework — each create an ephemeral,
sequential ``json.info_<seq>`` node under one path, holding a JSON :class:`LeaderInfo` (Mesos's
``json.info_`` nodes hold a ``MasterInfo``). The lowest sequence leads; every other contender
watches only its predecessor, so a leader's death wakes one process, not the herd. A leader
first recovers and only then serves; it says so by writing its info again with its epoch
(> 0). Followers — agents, SDK drivers, the simulator, the CLI, the master's framework proxy —
follow the lowest node *whose epoch is set*: they move to a new leader once it answers, never
to one still reading its registry.

Why not kazoo's ``Election`` recipe: it is a ``Lock``, whose waiting contender cannot publish
anything a follower could read (the lock node holds only an identifier we would have to map to
an address elsewhere), and whose leader keeps running after its session is LOST (kazoo installs
the lock's session listener only while waiting). The nodes here are what the recipe makes, plus
the data, plus our own session listener.

Threading: kazoo calls back on its own threads, and a state listener must neither block nor
call ZooKeeper. So the listeners here only hand the state to the reactor
(``reactor.callFromThread``); ZooKeeper calls run on short-lived threads or in watch callbacks
(where kazoo allows them); every owner callback runs on the reactor thread.

Losing the session while leading (RELIABILITY scenario 26): kazoo reports SUSPENDED at once when
the server closes the connection, and after ⅔ T at most when the link falls silent (a ping every
T/3, declared lost when the next is due); ZooKeeper expires the session T after it last heard
from us, and only then may a standby take over. So a leader **pauses at SUSPENDED**
(``on_suspended``: it sends and writes nothing more) — before any successor can exist — and
gives up (``on_lost``; the owner exits non-zero, as a Mesos master aborts) on LOST, or when the
link is not back within T of the SUSPENDED: by then the session is certainly gone. A connection
back within it is the same session (``on_resumed``): a ZooKeeper quorum-leader kill, whose
followers drop every client while they elect (0.5–1.05 s measured, cli/ensemble.py), costs a
pause, not a failover. A window of T/3 — the rest of T in the silent case — gave up on exactly
those healthy sessions. kazoo itself never expires a session on the client side (its LOST comes
only after reconnecting), which is why the timer is ours; while it runs, the leader is paused,
so the overlap with a successor elected meanwhile is one of silence, and epoch fencing covers
anything already in flight.
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
from typing import Any, Callable

import msgspec

from tepui.sdk.zookeeper import DEFAULT_SESSION_TIMEOUT, connect, parse_zk_url

__all__ = ["FRAMEWORKS", "MASTERS", "Contender", "LeaderFollower", "LeaderInfo", "follow", "lowest_info",
           "serving_leader"]

log = logging.getLogger("tepui.leadership")

MASTERS = "masters"
FRAMEWORKS = "frameworks"
PREFIX = "json.info_"


class LeaderInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a contender publishes in its node: how followers reach it, and its epoch once it
    serves (0 while it waits or recovers)."""

    id: str
    address: str = ""  # ZeroMQ HOST:PORT (masters); "" for frameworks
    http: str = ""  # base URL of its HTTP API
    epoch: int = 0
    public_key: str = ""  # Z85 CURVE key; "" when it runs without CURVE
    hostname: str = ""
    pid: int = 0


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LeaderInfo)


def _sequence(name: str) -> int | None:
    if not name.startswith(PREFIX):
        return None
    digits = name[len(PREFIX):]
    return int(digits) if digits.isdigit() else None


def contenders(children: list[str]) -> list[str]:
    """The election nodes among ``children``, lowest sequence (the leader) first."""
    numbered = [(seq, name) for name in children if (seq := _sequence(name)) is not None]
    return [name for _seq, name in sorted(numbered)]


def decode_info(data: bytes, where: str) -> LeaderInfo | None:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        log.warning("event=bad_leader_info node=%s error=%r", where, str(exc))
        return None


def _spawn(target: Callable[[], None], name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


def lowest_info(client: Any, path: str, watch: Callable[[Any], None] | None = None) -> LeaderInfo | None:
    """The lowest contender's info under ``path`` (its epoch 0 while it does not serve yet), read
    now; None without contenders, or when its data does not decode. With ``watch``, it is set on
    the children, on the lowest node's data and, while ``path`` does not exist, on its creation.
    Blocking: for the CLI and for threads, never for a reactor."""
    from kazoo.exceptions import NoNodeError

    while True:
        try:
            children = client.get_children(path, watch=watch)
            break
        except NoNodeError:
            # The watch tells us when the path appears. If it appeared since get_children, it is
            # a data watch on the path, and its children would never be watched: read again.
            if watch is None or client.exists(path, watch=watch) is None:
                return None
    for name in contenders(children):
        try:
            data, _stat = client.get(posixpath.join(path, name), watch=watch)
        except NoNodeError:
            continue  # it just left: the next one is now the lowest
        return decode_info(data, name)
    return None


def serving_leader(client: Any, path: str) -> LeaderInfo | None:
    """The serving leader under ``path`` (the lowest node, if its epoch is set), read now.
    Blocking: for the CLI and for threads, never for a reactor."""
    info = lowest_info(client, path)
    return info if info is not None and info.epoch > 0 else None


class LeaderFollower:
    """Calls ``on_change(info)`` on the reactor thread whenever the serving leader under
    ``path`` changes (another id, or a higher epoch); never twice for one (id, epoch).

    It watches the children of ``path`` and the data of the lowest node (the one that will
    publish its epoch), re-reading on every watch and after every reconnection (a new session
    has lost the old watches)."""

    def __init__(self, reactor: Any, client: Any, path: str, on_change: Callable[[LeaderInfo], None]) -> None:
        self._reactor, self._client, self._path, self._on_change = reactor, client, path, on_change
        self._lock = threading.Lock()
        self._last: tuple[str, int] | None = None
        self._closed = False
        self.leader: LeaderInfo | None = None  # as last delivered (reactor thread)

    def start(self) -> None:
        self._client.add_listener(self._on_state)
        _spawn(self._refresh, "tepui-leader-follower")

    def close(self) -> None:
        self._closed = True
        self._client.remove_listener(self._on_state)

    def _on_state(self, state: str) -> None:
        # A state listener must not block nor call ZooKeeper: re-read on a thread of our own.
        if state == "CONNECTED" and not self._closed:
            _spawn(self._refresh, "tepui-leader-follower")

    def _watch(self, _event: Any = None) -> None:
        self._refresh()

    def _refresh(self) -> None:
        from kazoo.exceptions import KazooException

        if self._closed:
            return
        with self._lock:
            try:
                info = lowest_info(self._client, self._path, self._watch)
            except KazooException as exc:  # the link is down: the reconnection listener re-reads
                log.debug("event=leader_read_failed path=%s error=%r", self._path, exc)
                return
            if info is None or info.epoch <= 0:
                if self._last is not None:  # the leader's node is gone; its successor does not serve yet
                    self._last = None
                    self._reactor.callFromThread(self._vacate)
                return
            if (info.id, info.epoch) == self._last:
                return
            self._last = (info.id, info.epoch)
        self._reactor.callFromThread(self._deliver, info)

    def _vacate(self) -> None:
        """No master serves (an election, a recovery under way): ``leader`` says so, so that a
        standby answers "try again in a second" rather than redirecting to the dead leader.
        ``on_change`` is not called: a client keeps its connection until a leader serves."""
        if not self._closed and self._last is None:
            self.leader = None

    def _deliver(self, info: LeaderInfo) -> None:
        if self._closed:
            return
        self.leader = info
        log.info("event=leader_changed path=%s id=%s epoch=%d address=%s http=%s", self._path, info.id, info.epoch,
                 info.address or "-", info.http or "-")
        self._on_change(info)


class Contender:
    """One contender for leadership under ``path``; see the module docstring.

    ``on_elected()`` runs once, when this contender's node is the lowest; the owner then
    recovers, serves and calls :meth:`publish` with its epoch. ``on_lost(reason)`` runs at most
    once, when it can no longer be sure it leads (session LOST, or SUSPENDED past the safety
    window while leading): the owner stops at once and exits non-zero. A contender that has not
    won yet and loses its session simply joins again. ``leader`` is the serving leader as last
    seen (a standby redirects to it)."""

    def __init__(self, reactor: Any, client: Any, path: str, info: LeaderInfo,
                 on_elected: Callable[[], None], on_lost: Callable[[str], None],
                 on_suspended: Callable[[], None] | None = None, on_resumed: Callable[[], None] | None = None,
                 session_timeout: float = DEFAULT_SESSION_TIMEOUT,
                 on_leader: Callable[[LeaderInfo], None] | None = None) -> None:
        self._reactor, self._client, self._path, self.info = reactor, client, path, info
        self._on_elected, self._on_lost = on_elected, on_lost
        self._on_suspended, self._on_resumed, self._on_leader = on_suspended, on_resumed, on_leader
        # After kazoo's SUSPENDED the session may live up to T more (see the module docstring).
        self.safety_window = session_timeout
        self._lock = threading.Lock()
        self.node: str | None = None
        self.elected = False
        self._lost = False
        self._closed = False
        self._suspended_timer: Any = None
        self._rejoin = False
        self._follower = LeaderFollower(reactor, client, path, self._leader_seen)

    @property
    def leader(self) -> LeaderInfo | None:
        return self._follower.leader

    def start(self) -> None:
        self._client.add_listener(self._on_state)
        self._follower.start()
        _spawn(self._join, "tepui-contender")

    def publish(self, info: LeaderInfo) -> None:
        """Writes ``info`` into this contender's node (a leader: once it serves, with its epoch)."""
        self.info = info
        node = self.node

        def write() -> None:
            from kazoo.exceptions import KazooException

            try:
                self._client.set(node, _encoder.encode(info))
            except KazooException as exc:
                self._reactor.callFromThread(self._lose, f"cannot publish leadership in {node}: {exc!r}")

        if node is not None:
            _spawn(write, "tepui-contender-publish")

    def close(self, timeout: float = 1.0) -> None:
        """Leaves the election: deletes this contender's node (a graceful stop hands over at
        once instead of after the session timeout). Waits ``timeout`` seconds at most: a
        contender that lost its leadership may be cut off from ZooKeeper, where a plain
        ``delete`` would wait for ever (measured: a partitioned master that gave up never
        exited), and its node goes with its session anyway."""
        from kazoo.exceptions import KazooException

        self._closed = True
        self._cancel_timer()
        self._follower.close()
        self._client.remove_listener(self._on_state)
        if self.node is not None and not self._lost:
            try:
                self._client.delete_async(self.node).get(timeout=timeout)
            except (KazooException, Exception) as exc:  # the handler's timeout is no KazooException
                log.warning("event=election_leave_failed node=%s error=%r", self.node, exc)

    @property
    def lost(self) -> bool:
        """Whether :meth:`_lose` ran: the owner is on its way out and ZooKeeper may be unreachable."""
        return self._lost

    # -- election (ZooKeeper threads) -------------------------------------------------------

    def _join(self) -> None:
        from kazoo.exceptions import KazooException

        try:
            self._client.ensure_path(self._path)
            self.node = self._client.create(posixpath.join(self._path, PREFIX), _encoder.encode(self.info),
                                            ephemeral=True, sequence=True, makepath=True)
        except KazooException as exc:
            self._reactor.callFromThread(self._lose, f"cannot join the election under {self._path}: {exc!r}")
            return
        log.info("event=election_joined node=%s", self.node)
        self._check()

    def _watch(self, _event: Any = None) -> None:
        self._check()

    def _check(self) -> None:
        from kazoo.exceptions import KazooException

        with self._lock:
            if self._closed or self.elected or self.node is None:
                return
            try:
                while True:
                    names = contenders(self._client.get_children(self._path))
                    own = posixpath.basename(self.node)
                    if own not in names:
                        self._reactor.callFromThread(self._node_vanished)
                        return
                    index = names.index(own)
                    if index == 0:
                        self.elected = True
                        break
                    # Only the predecessor: its departure is the only one that can make us lead.
                    if self._client.exists(posixpath.join(self._path, names[index - 1]), watch=self._watch):
                        return
            except KazooException as exc:  # the link is down: the reconnection listener checks again
                log.debug("event=election_check_failed path=%s error=%r", self._path, exc)
                return
        log.info("event=elected node=%s", self.node)
        self._reactor.callFromThread(self._elected)

    # -- reactor thread ---------------------------------------------------------------------

    def _elected(self) -> None:
        if not (self._closed or self._lost):
            self._on_elected()

    def _leader_seen(self, info: LeaderInfo) -> None:
        if self._on_leader is not None:
            self._on_leader(info)

    def _node_vanished(self) -> None:
        if self.elected:
            self._lose("this contender's election node is gone (its session expired)")
        elif not self._closed:
            _spawn(self._join, "tepui-contender")

    def _on_state(self, state: str) -> None:
        # kazoo's thread: must not block nor call ZooKeeper.
        self._reactor.callFromThread(self._state_changed, state)

    def _state_changed(self, state: str) -> None:
        if self._closed or self._lost:
            return
        if state == "LOST":
            if self.elected:
                self._lose("the ZooKeeper session expired")
            else:
                self._rejoin = True  # our node is gone with the session: join again once connected
        elif state == "SUSPENDED":
            log.warning("event=zookeeper_suspended leading=%s give_up_after_s=%.2f", self.elected,
                        self.safety_window)
            if self.elected and self._suspended_timer is None:
                self._suspended_timer = self._reactor.callLater(
                    self.safety_window, self._lose,
                    f"ZooKeeper unreachable for longer than the session may live ({self.safety_window:.2f} s "
                    "after the link was declared down)")
                if self._on_suspended is not None:
                    self._on_suspended()
        elif state == "CONNECTED":
            log.info("event=zookeeper_connected leading=%s", self.elected)
            if self._suspended_timer is not None:
                self._cancel_timer()
                if self._on_resumed is not None:
                    self._on_resumed()
            if self._rejoin and not self.elected:
                self._rejoin = False
                _spawn(self._join, "tepui-contender")
            elif not self.elected:
                _spawn(self._check, "tepui-contender")

    def _cancel_timer(self) -> None:
        if self._suspended_timer is not None:
            if self._suspended_timer.active():
                self._suspended_timer.cancel()
            self._suspended_timer = None

    def _lose(self, reason: str) -> None:
        if self._lost or self._closed:
            return
        self._lost = True
        self._cancel_timer()
        log.error("event=leadership_lost path=%s reason=%r", self._path, reason)
        self._on_lost(reason)


class _OwnedFollower(LeaderFollower):
    """A follower that owns its kazoo client (:func:`follow`): closing it stops the client."""

    def close(self) -> None:
        super().close()
        self._client.stop()
        self._client.close()


def follow(reactor: Any, zk_url: str, path_parts: tuple[str, ...], on_change: Callable[[LeaderInfo], None],
           session_timeout: float = DEFAULT_SESSION_TIMEOUT) -> LeaderFollower:
    """Connects to the ensemble of ``zk_url`` (blocking until a server answers; raises
    ``ZkUnavailable``) and follows the serving leader under ``path_parts`` (e.g. ``(MASTERS,)``)."""
    url = parse_zk_url(zk_url)
    follower = _OwnedFollower(reactor, connect(url, session_timeout), url.child(*path_parts), on_change)
    follower.start()
    return follower


def own_info(id: str, **fields: Any) -> LeaderInfo:
    """A contender's first info: who it is, where it runs, no epoch yet."""
    import socket

    return LeaderInfo(id=id, hostname=socket.gethostname(), pid=os.getpid(), **fields)
