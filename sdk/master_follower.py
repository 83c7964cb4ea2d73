"""Clients of a ``zk://`` master address — agents, SDK drivers, the simulator — follow the serving
master: where to connect and with which key, each time ZooKeeper names a new leader.

Why one module: the three clients must agree on what a published :class:`LeaderInfo` means to
a connection (its ZeroMQ address, its CURVE key) and on how that key is chosen, and each must
learn of a new leader at once rather than after its silence timeout — a SIGKILLed leader's
connections may stay quiet for many seconds, while ZooKeeper names its successor within its
session timeout (sdk/zookeeper.py). The connection itself moves with
:meth:`tepui.sdk.dealer.DealerEndpoint.retarget` (the simulator moves its own links).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from tepui.sdk.keys import ClientKeys
from tepui.sdk.leadership import MASTERS, LeaderFollower, LeaderInfo, follow
from tepui.sdk.transport import tcp_address
from tepui.sdk.zookeeper import DEFAULT_SESSION_TIMEOUT

__all__ = ["MasterTarget", "follow_master", "master_key", "target_of"]

log = logging.getLogger("tepui.master_follower")


@dataclass(frozen=True)
class MasterTarget:
    """The serving master as a client connects to it."""

    connect: str  # tcp://HOST:PORT
    server_key: bytes | None  # its CURVE public key (Z85); None: plain text
    info: LeaderInfo


def master_key(keys: ClientKeys | None, info: LeaderInfo) -> bytes | None:
    """Which CURVE key a client expects the new leader to have.

    * No client keys: None, plain text (only an ``--insecure`` master accepts it).
    * A configured master key: that key, whatever the leader publishes. All the masters of one
      cluster share one key store (``tepui up --ha``), so they serve one key; and a key read from
      ZooKeeper is only as trustworthy as ZooKeeper's ACLs, while the configured one came with the
      client's own keys. A published key that differs is logged (naming both): either that master
      was set up from another key store, and the handshake will fail and say so, or a key
      rotation is under way (the configured fallback keys still apply).
    * Client keys without a configured master key (a client configuration naming a ``zk://``
      master and only the client's key pair): the published key — ZooKeeper is then trusted to
      say whom to talk to, as it is trusted to say where.
    """
    if keys is None:
        return None
    published = info.public_key.encode("ascii") if info.public_key else b""
    if not keys.server:
        if not published:
            log.error("event=no_master_key leader=%s hint=\"the leader publishes no public key and none is "
                      "configured: give master_public_key in the client configuration\"", info.id)
        return published
    if published and published != keys.server and published not in keys.fallback:
        log.warning("event=master_key_differs leader=%s configured=%s published=%s hint=\"the configured key is "
                    "used; a master set up from another key store will refuse the handshake\"", info.id,
                    keys.server.decode("ascii"), published.decode("ascii"))
    return keys.server


def target_of(info: LeaderInfo, keys: ClientKeys | None) -> MasterTarget:
    """Where and with which key to reach the leader ``info`` describes."""
    return MasterTarget(tcp_address(info.address, 5050), master_key(keys, info), info)


def follow_master(reactor: Any, zk_url: str, keys: ClientKeys | None, on_target: Callable[[MasterTarget], None],
                  session_timeout: float = DEFAULT_SESSION_TIMEOUT) -> LeaderFollower:
    """Follows the serving master under ``<zk path>/masters``: ``on_target`` runs on the reactor
    thread for the first serving leader and for every change (another master, or a higher epoch).
    Blocks until a ZooKeeper server answers (raises ``ZkUnavailable`` naming the servers when
    none does); ``close()`` the result to stop following."""

    def changed(info: LeaderInfo) -> None:
        try:
            target = target_of(info, keys)
        except ValueError as exc:  # no or a broken address: nothing to connect to; the next change may fix it
            log.error("event=leader_address_unusable leader=%s epoch=%d address=%r error=%r", info.id, info.epoch,
                      info.address, str(exc))
            return
        on_target(target)

    return follow(reactor, zk_url, (MASTERS,), changed, session_timeout)
