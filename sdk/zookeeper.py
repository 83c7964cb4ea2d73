"""ZooKeeper addresses and sessions: ``zk://h1:p1,h2:p2,h3:p3/tepui`` (Mesos's form), parsed once,
and a kazoo client started with the session timeout that bounds a failover.

Why the session timeout matters: a SIGKILLed leader's ephemeral node — its claim to lead —
lives until ZooKeeper expires the session, T seconds after it last heard from the process. No
standby can take over sooner (nothing else tells a dead leader from a paused one), so T is the
floor of every failover. kazoo pings every T/3 and declares the link dead (SUSPENDED) after a
further T/3 without an answer, and the server clamps T to [2, 20] × tickTime: with ZooKeeper's
default tickTime of 2 s the least T is 4 s and a ≤ 3 s failover is impossible. Tepui's own
ensemble (``tepui up --ha``, the tests) runs at tickTime 200 ms. ``DEFAULT_SESSION_TIMEOUT`` is
chosen in docs/operations.md ("Failover timing"): short enough for the 3 s target, long enough
that a busy 2-core machine never loses a healthy session (bench/failover.py measures both).
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_SESSION_TIMEOUT", "ZK_SCHEME", "ZkUnavailable", "ZkUrl", "connect", "is_zk", "parse_zk_url"]

ZK_SCHEME = "zk://"
DEFAULT_SESSION_TIMEOUT = 2.0
"""Seconds; the session timeout masters, frameworks and followers ask ZooKeeper for (see above)."""

log = logging.getLogger("tepui.zookeeper")


class ZkUnavailable(Exception):
    """No ZooKeeper server of the URL answered in time: the message names them and what to do."""


def is_zk(address: str | None) -> bool:
    """Whether a master address is a ZooKeeper URL (clients then follow the leader it names)."""
    return bool(address) and str(address).startswith(ZK_SCHEME)


@dataclass(frozen=True)
class ZkUrl:
    """A parsed ``zk://`` URL: the servers kazoo connects to and the cluster's root path."""

    hosts: str  # "h1:p1,h2:p2"
    path: str  # "/tepui"

    def child(self, *parts: str) -> str:
        """An absolute path under the root: ``child("masters")`` → ``/tepui/masters``."""
        return posixpath.join(self.path, *parts) if parts else self.path

    def __str__(self) -> str:
        return f"{ZK_SCHEME}{self.hosts}{self.path}"


def parse_zk_url(text: str) -> ZkUrl:
    """``zk://host:port[,host:port...]/path``; a ValueError names what is wrong and the form."""
    form = "expected zk://HOST:PORT[,HOST:PORT...]/PATH, e.g. zk://10.0.0.1:2181,10.0.0.2:2181/tepui"
    if not isinstance(text, str) or not text.startswith(ZK_SCHEME):
        raise ValueError(f"{text!r} is not a ZooKeeper URL: {form}")
    rest = text[len(ZK_SCHEME):]
    hosts, slash, path = rest.partition("/")
    if not slash or not path.strip("/"):
        raise ValueError(f"{text!r} names no path: {form}")
    if "@" in hosts:
        raise ValueError(f"{text!r}: credentials in a ZooKeeper URL are not supported; {form}")
    servers = [server.strip() for server in hosts.split(",")]
    for server in servers:
        host, colon, port = server.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: server {server!r} is not HOST:PORT; {form}")
    clean = "/" + "/".join(part for part in path.split("/") if part)
    if any(part in (".", "..") for part in clean.split("/")):
        raise ValueError(f"{text!r}: the path may not contain '.' or '..'; {form}")
    return ZkUrl(",".join(servers), clean)


def connect(url: ZkUrl | str, session_timeout: float = DEFAULT_SESSION_TIMEOUT,
            connect_timeout: float = 10.0) -> Any:
    """A started ``KazooClient`` for ``url`` asking for ``session_timeout`` seconds; its
    connection retries for ever (kazoo reconnects by itself; owners watch its state).

    Returns ``Any``: kazoo ships no type information. Raises :class:`ZkUnavailable` when no
    server answered within ``connect_timeout``."""
    from kazoo.client import KazooClient
    from kazoo.handlers.threading import KazooTimeoutError

    parsed = parse_zk_url(url) if isinstance(url, str) else url
    client = KazooClient(hosts=parsed.hosts, timeout=session_timeout,
                         connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 1.0})
    try:
        client.start(timeout=connect_timeout)
    except KazooTimeoutError:
        client.close()
        raise ZkUnavailable(f"no ZooKeeper server of {parsed.hosts} answered within {connect_timeout:g} s; "
                            "check that the ensemble runs (echo ruok | nc HOST PORT answers imok) "
                            "and that the URL names its client ports") from None
    log.info("event=zookeeper_connected hosts=%s path=%s session_timeout_s=%g", parsed.hosts, parsed.path,
             session_timeout)
    return client
