"""``tepui master``: build the core and its shell and run them on the asyncio reactor."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

from tepui.sdk.runtime import install_reactor
from tepui.sdk.shell import configure_logging

if TYPE_CHECKING:
    from tepui.master.partitions import RemovalRate

log = logging.getLogger("tepui.master")


def run_master(
    ip: str = "0.0.0.0",
    port: int = 5050,
    http_port: int = 5080,
    advertise_ip: str | None = None,
    hostname: str | None = None,
    agent_ping_interval: float = 2.0,
    max_agent_ping_timeouts: int = 5,
    heartbeat_interval: float = 15.0,
    allocation_interval: float = 1.0,
    offer_timeout: float | None = 60.0,
    log_level: str = "info",
    work_dir: str | None = None,
    agent_reregister_timeout: float = 600.0,
    agent_removal_rate: RemovalRate | None = None,
    agent_gone_timeout: float = 86400.0,
    recovery_agent_removal_limit: float = 100.0,
) -> None:
    configure_logging(log_level, "master")
    reactor = install_reactor()
    from tepui.master.core import MasterConfig, MasterCore
    from tepui.master.shell import MasterShell

    host = hostname or socket.gethostname()
    advertised = advertise_ip or ("127.0.0.1" if ip in ("0.0.0.0", "*") else ip)
    config = MasterConfig(
        master_id=uuid.uuid4().hex[:12],
        hostname=host,
        address=f"{advertised}:{port}",
        http_port=http_port,
        agent_ping_interval=agent_ping_interval,
        max_agent_ping_timeouts=max_agent_ping_timeouts,
        heartbeat_interval=heartbeat_interval,
        allocation_interval=allocation_interval,
        offer_timeout=offer_timeout,
        agent_reregister_timeout=agent_reregister_timeout,
        agent_removal_rate=agent_removal_rate,
        agent_gone_timeout=agent_gone_timeout,
        recovery_agent_removal_limit=recovery_agent_removal_limit,
    )
    store = None
    if work_dir:
        from tepui.sdk.store import SQLiteStore, StoreError

        try:
            store = SQLiteStore(os.path.join(work_dir, "registry.db"))
        except StoreError as exc:
            raise SystemExit(f"cannot open the registry in {work_dir}: {exc}") from None
        log.info("event=registry path=%s", os.path.join(work_dir, "registry.db"))
    else:
        log.warning("event=registry_in_memory hint=\"give --work-dir to keep weights, quotas, reservations, "
                    "agents and frameworks across master restarts\"")
    shell = MasterShell(reactor, MasterCore(config), f"tcp://{ip}:{port}", store)
    reactor.listenTCP(http_port, shell.site(), interface="" if ip in ("0.0.0.0", "*") else ip)
    shell.start()
    log.info("event=failure_detection agent_silent_after_s=%g ping_interval_s=%g agent_removal_rate=%s "
             "agent_gone_timeout_s=%g recovery_agent_removal_limit=%g%%",
             agent_ping_interval * max_agent_ping_timeouts, agent_ping_interval, agent_removal_rate or "unlimited",
             agent_gone_timeout, recovery_agent_removal_limit)
    log.info("event=master_serving zmq=%s:%d http=%s:%d", ip, port, ip, http_port)
    reactor.addSystemEventTrigger("before", "shutdown", shell.stop)
    reactor.run()
    if store is not None:
        store.close()
    if shell.failed:
        raise SystemExit(1)
