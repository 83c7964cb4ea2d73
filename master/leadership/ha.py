"""A master in HA mode (``tepui master --zk zk://…/tepui``): a contender that is a standby until
it wins, then the master, and that exits when it can no longer be sure it leads.

The sequence, and why in this order:

1. **Bind both ports and join the election.** A standby answers on the ports it will lead
   from (master/leadership/standby.py), so a client given this master's address learns where
   the leader is, and taking over costs no bind.
2. **Elected: claim the epoch, then recover.** The registry is the ``ZooKeeperStore`` under
   ``<path>/registry``. The epoch is claimed in it with compare-and-set
   (master/durability/epoch.py), so it only ever grows, and every later registry write first
   checks it: an old leader resumed after a pause finds a newer epoch there and exits before it
   writes anything. Then the registry is read back (agents, frameworks, reservations, volumes,
   weights, quotas) and the re-registration window opens, exactly as after a single master's
   restart.
3. **Serve, then publish.** The HTTP site switches from the standby's resources to the
   master's, the socket's messages go to the master shell, and only then does the contender
   write its info with the epoch: followers (agents, drivers, the CLI) move to a master that
   answers.
4. **Lose ZooKeeper: pause, then exit.** SUSPENDED pauses the shell (nothing more is sent or
   written; master/shell.py ``pause``); the same session back resumes it; LOST, or no connection
   within the session timeout of the SUSPENDED, ends the process with status 1, as a Mesos master aborts
   (RELIABILITY scenario 26). A supervisor (``tepui up --ha``, systemd) starts it again, as a
   standby.
5. **A graceful stop leaves the election** (deletes the node), so a standby takes over at once
   rather than after the session timeout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import msgspec

from tepui.master.leadership.standby import StandbyResponder, StandbyRoot
from tepui.sdk.codec import Codec
from tepui.sdk.leadership import MASTERS, Contender, LeaderInfo, own_info
from tepui.sdk.protocol.envelope import MasterInbound
from tepui.sdk.zookeeper import ZkUrl

log = logging.getLogger("tepui.master")

REGISTRY = "registry"

if TYPE_CHECKING:
    from tepui.master.shell import MasterShell
    from tepui.sdk.store import Store


class _Route:
    """Where the one ROUTER socket's messages go: the standby responder, then the master."""

    def __init__(self, message: Callable[..., None], unreachable: Callable[[bytes], None]) -> None:
        self.to_message, self.to_unreachable = message, unreachable

    def message(self, peer: bytes, payload: bytes, identity: str | None = None) -> None:
        self.to_message(peer, payload, identity)

    def unreachable(self, peer: bytes) -> None:
        self.to_unreachable(peer)


class HaMaster:
    """One master contender; see the module docstring.

    ``lead(store, epoch, endpoint)`` builds and starts the master shell (the same code as a
    single master's, given the ZooKeeper registry, the claimed epoch and the bound socket; it
    switches the HTTP site to the master's resources); ``failed`` tells ``run_master`` to exit 1."""

    def __init__(self, reactor: Any, url: ZkUrl, client: Any, info: LeaderInfo, endpoint_factory: Callable[..., Any],
                 lead: Callable[[Store, int, Any], MasterShell], session_timeout: float) -> None:
        self.reactor, self.url, self.client = reactor, url, client
        self.info = info
        self.failed = False
        self.shell: MasterShell | None = None
        self._lead = lead
        self._store: Store | None = None
        self.contender = Contender(reactor, client, url.child(MASTERS), info, on_elected=self._elected,
                                   on_lost=self._lost, on_suspended=self._suspended, on_resumed=self._resumed,
                                   session_timeout=session_timeout)
        self.session_timeout = session_timeout
        codec: Codec[Any] = Codec(MasterInbound)
        self._route = _Route(lambda *args: None, lambda peer: None)
        self.endpoint = endpoint_factory(self._route.message, self._route.unreachable)
        self.standby = StandbyResponder(info.id, lambda: self.contender.leader, self.endpoint.send, codec)
        self._route.to_message, self._route.to_unreachable = self.standby.on_message, self.standby.on_unreachable

    def standby_root(self) -> StandbyRoot:
        return StandbyRoot(self.info.id, lambda: self.contender.leader)

    def start(self) -> None:
        log.info("event=contending zk=%s path=%s id=%s session_timeout_s=%g", self.url.hosts,
                 self.url.child(MASTERS), self.info.id, self.session_timeout)
        self.contender.start()

    def stop(self) -> None:
        """Reactor shutdown: the shell stops, and the node goes, so a standby takes over now."""
        if self.shell is not None:
            self.shell.stop()
        else:
            self.endpoint.close()
        self.contender.close()
        if self._store is not None:
            self._store.close()
        if self.failed or self.contender.lost:
            return  # ZooKeeper may be unreachable: stopping the client could wait for ever; exit
        self.client.stop()
        self.client.close()

    # -- contender callbacks (reactor thread) ----------------------------------------------------

    def _elected(self) -> None:
        from tepui.master.durability.epoch import claim_epoch, clock_epoch
        from tepui.sdk.store import StoreError
        from tepui.sdk.zk_store import ZooKeeperStore

        started = self.reactor.seconds()
        try:
            # The store gives up on a ZooKeeper it cannot reach within the session timeout (the
            # contender's safety window): the master then exits, as it must.
            store = self._store = ZooKeeperStore(self.client, self.url.child(REGISTRY),
                                                 retry_seconds=self.contender.safety_window)
            epoch = claim_epoch(store, clock_epoch())
        except StoreError as exc:
            self._fail(f"elected, but cannot claim an epoch in the registry at {self.url.child(REGISTRY)}: {exc}")
            return
        log.info("event=master_epoch epoch=%d source=zookeeper", epoch)
        shell = self._lead(store, epoch, self.endpoint)
        if shell.failed:
            self._fail("the master could not start as leader (see above)")
            return
        self.shell = shell
        self._route.to_message, self._route.to_unreachable = shell.on_message, shell.on_unreachable
        self.info = msgspec.structs.replace(self.info, epoch=epoch)
        self.contender.publish(self.info)
        log.info("event=leading id=%s epoch=%d took_s=%.3f", self.info.id, epoch, self.reactor.seconds() - started)

    def _suspended(self) -> None:
        if self.shell is not None:
            self.shell.pause()

    def _resumed(self) -> None:
        if self.shell is not None:
            self.shell.resume()

    def _lost(self, reason: str) -> None:
        self._fail(f"leadership lost: {reason}")

    def _fail(self, reason: str) -> None:
        self.failed = True
        if self.shell is not None:
            self.shell.fail(reason, event="leadership_lost")
        else:
            log.error("event=leadership_lost reason=%r action=exiting", reason)
            if self.reactor.running:
                self.reactor.stop()


def master_info(master_id: str, address: str, http: str, public_key: bytes | None) -> LeaderInfo:
    """What this master publishes: its ZeroMQ address, HTTP URL and CURVE key (epoch 0 until it serves)."""
    return own_info(master_id, address=address, http=http, public_key=public_key.decode("ascii") if public_key else "")
