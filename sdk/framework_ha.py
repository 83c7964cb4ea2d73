"""A framework process as one of several instances with one leader (``--zk``), as Marathon runs.

Every instance joins the election under ``<zk path>/frameworks/<name>/leader`` (a
:class:`~tepui.sdk.leadership.Contender`, its info the instance's id and API URL) and serves its
API port at once. While it does not lead, that port answers as :mod:`.standby` says: 307 to the
leader's API, 503 while none serves, ``/health`` 200 naming the leader.

Elected, it becomes what a lone instance is from its start, on another store: its
``ZooKeeperStore`` under ``<zk path>/frameworks/<name>/store``, shared by every instance, instead
of a SQLite file. It first claims an epoch in that store and fences every write transaction on
it (:mod:`.fencing`), so an old leader that wakes up from a pause writes nothing; then it loads
its state, re-subscribes with the framework id it finds there (the master sees a framework
failover: the tasks keep running, and the master's ``/frameworks/<name>/`` proxy follows the new
``webui_url``), swaps its API in for the standby answers, starts ticking, and publishes its
epoch in its election node (followers then know it serves).

Losing leadership (the session LOST, or SUSPENDED past the session's safety window): it stops at
once and exits with status 1 — it never steps back down to standby. Marathon learnt that the
hard way (#2509, a leader kept leading without ZooKeeper; #4487, #4656: it now exits), and a
framework's in-memory state after a lost leadership is exactly what must not be trusted; a
supervisor restarts the process, which joins again as a standby. A graceful stop (SIGTERM)
leaves the election first, so a standby takes over at once instead of a session timeout later.

Threading: the store is synchronous, as on SQLite, so a leader's ZooKeeper round trips run on
the reactor thread (each a millisecond or so on a LAN); while ZooKeeper is unreachable the store
retries for up to the session timeout and then fails — the process exits either way.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import msgspec
from twisted.internet import task
from twisted.web import resource

from tepui.sdk.fencing import FencedStore, claim_epoch
from tepui.sdk.framework_api import json_answer
from tepui.sdk.framework_shell import TICK_SECONDS, Build, FrameworkOptions, Running, advertised_ip
from tepui.sdk.leadership import FRAMEWORKS, Contender, LeaderInfo, own_info
from tepui.sdk.standby import standby_answer
from tepui.sdk.store import StoreError
from tepui.sdk.zookeeper import ZkUnavailable, connect, parse_zk_url

__all__ = ["LEADER", "STORE", "FrameworkInstance", "run_instance"]

log = logging.getLogger("tepui.framework_ha")

LEADER = "leader"  # <zk path>/frameworks/<name>/leader: the election
STORE = "store"  # <zk path>/frameworks/<name>/store: the ZooKeeperStore root


def instance_id(options: FrameworkOptions) -> str:
    """Who an instance is, in logs and in its election node: its name and API address."""
    return f"{options.name}@{advertised_ip(options)}:{options.http_port}"


class StandbyApi(resource.Resource):
    """The API port of an instance that does not serve (yet): :func:`.standby.standby_answer`."""

    isLeaf = True

    def __init__(self, instance: FrameworkInstance) -> None:
        super().__init__()
        self.instance = instance

    def render(self, request: Any) -> bytes:
        answer = standby_answer(request.uri.decode("ascii", "replace"), self.instance.own,
                                self.instance.leader(), self.instance.elected)
        for name, value in answer.headers:
            request.setHeader(name.encode(), value.encode())
        request.setHeader(b"cache-control", b"no-store")
        return json_answer(request, answer.code, answer.body)


class FrameworkInstance:
    """One instance: standby until elected, then the framework ``build`` makes; see the module
    docstring. ``client``: a started kazoo client this instance owns (it stops it at the end)."""

    def __init__(self, reactor: Any, options: FrameworkOptions, service: str, build: Build, client: Any,
                 base_path: str) -> None:
        self.reactor, self.options, self.service, self.build = reactor, options, service, build
        self.client, self.base_path = client, base_path
        self.own = own_info(instance_id(options), http=f"http://{advertised_ip(options)}:{options.http_port}")
        self.contender = Contender(reactor, client, f"{base_path}/{LEADER}", self.own, self.elected_now,
                                   self.lost, session_timeout=options.zk_session_timeout)
        self.elected = False
        self.running: Running | None = None
        self.store: FencedStore | None = None
        self.ticker: Any = None
        self.site: Any = None
        self.exit_status = 0

    def leader(self) -> LeaderInfo | None:
        return self.contender.leader

    def relay_scope(self) -> str | None:
        """The framework id the master's relay tokens are for: none while standby."""
        return self.running.driver.framework_id if self.running is not None else None

    def serve(self) -> None:
        """Listens on the API port (standby answers until elected) and joins the election once
        the reactor runs."""
        from tepui.sdk.http_security import GuardedSite, listen, policy_from_flags

        self.site = GuardedSite(StandbyApi(self), policy_from_flags(self.options.token_file, self.options.read_auth,
                                                                    self.service), relay_scope=self.relay_scope)
        listen(self.reactor, self.options.http_port, self.site, self.options.http_ip)
        log.info("event=framework_standby instance=%s api=%s election=%s/%s", self.own.id, self.own.http,
                 self.base_path, LEADER)
        self.reactor.callWhenRunning(self.contender.start)
        self.reactor.addSystemEventTrigger("before", "shutdown", self.stopping)
        self.reactor.addSystemEventTrigger("after", "shutdown", self.stopped)

    # --- leadership (reactor thread) --------------------------------------------------------

    def elected_now(self) -> None:
        """Claims the epoch, loads the framework from the shared store, serves, publishes."""
        from tepui.sdk.zk_store import ZooKeeperStore

        self.elected = True
        store_root = f"{self.base_path}/{STORE}"
        log.info("event=framework_elected instance=%s store=%s", self.own.id, store_root)
        try:
            shared = ZooKeeperStore(self.client, store_root)
            epoch = claim_epoch(shared)
            self.store = FencedStore(shared, epoch)
            running = self.build(self.store, f"zookeeper:{store_root} epoch={epoch}")
        except StoreError as exc:
            self.fail(f"cannot take over the store at {store_root}: {exc}")
            return
        self.running = running
        self.site.resource = running.api
        running.hub.start()
        running.driver.start()
        self.ticker = task.LoopingCall(running.tick)
        self.ticker.clock = self.reactor
        self.ticker.start(TICK_SECONDS, now=False)
        self.contender.publish(msgspec.structs.replace(self.own, epoch=epoch))
        log.info("event=framework_leading instance=%s epoch=%d", self.own.id, epoch)

    def lost(self, reason: str) -> None:
        """Leadership lost: nothing more may be written or sent; the process exits with 1."""
        if self.store is not None:
            self.store.revoke(reason)
        self.fail(f"lost leadership: {reason}")

    def fail(self, reason: str) -> None:
        log.critical("event=framework_leadership_lost instance=%s reason=%r action=exiting", self.own.id, reason)
        self.exit_status = 1
        if self.running is not None:
            self.running.shell.failed = True
        if self.reactor.running:
            self.reactor.stop()

    # --- shutdown ---------------------------------------------------------------------------

    def stopping(self) -> Any:
        """Before shutdown: the driver leaves with failover (the tasks keep running; the reactor
        waits for the Deferred returned), and — a graceful stop — this instance leaves the
        election, so a standby takes over at once."""
        if self.ticker is not None and self.ticker.running:
            self.ticker.stop()
        left = self.running.driver.stop(failover=True) if self.running is not None else None
        if self.exit_status == 0:
            self.contender.close()
        return left

    def stopped(self) -> None:
        if self.running is not None:
            if self.running.before_close is not None:
                self.running.before_close()
            self.running.hub.stop()
        if self.store is not None:
            self.store.close()
        if self.exit_status:
            return  # ZooKeeper may be unreachable (why leadership was lost): stopping the client could wait for ever
        self.client.stop()
        self.client.close()

    def status(self) -> int:
        failed = self.running is not None and self.running.shell.failed
        return 1 if self.exit_status or failed else 0


def run_instance(reactor: Any, options: FrameworkOptions, service: str, build: Build) -> int:
    """Runs one instance until SIGTERM/SIGINT or lost leadership; returns the exit status."""
    assert options.zk is not None
    url = parse_zk_url(options.zk)
    try:
        client = connect(url, options.zk_session_timeout)
    except ZkUnavailable as exc:
        print(f"tepui {options.name}: {exc}", file=sys.stderr)
        return 1
    instance = FrameworkInstance(reactor, options, service, build, client, url.child(FRAMEWORKS, options.name))
    instance.serve()
    reactor.run()
    status = instance.status()
    if status:
        # Exit now, as a master that lost its leadership does (master/main.py ``_abort``):
        # kazoo's exit handler joins its callback threads, and one waiting on an unreachable
        # ZooKeeper waits for ever.
        logging.shutdown()
        os._exit(status)
    return status
