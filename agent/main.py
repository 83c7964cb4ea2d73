"""``tepui agent``: detect resources, register with the master, run tasks."""

from __future__ import annotations

import logging
import socket
import uuid

from tepui.sdk.runtime import install_reactor
from tepui.sdk.shell import configure_logging
from tepui.sdk.transport import tcp_address

log = logging.getLogger("tepui.agent")


def run_agent(
    master: str,
    work_dir: str,
    resources: str | None = None,
    attributes: str | None = None,
    hostname: str | None = None,
    kill_grace_period: float = 5.0,
    master_silence_limit: float = 75.0,
    update_retry_initial: float = 10.0,
    log_level: str = "info",
) -> None:
    configure_logging(log_level, "agent")
    from tepui.agent.core import AgentConfig, AgentCore
    from tepui.agent.probe import agent_resources, boot_id, parse_attributes
    from tepui.agent.shell import AgentShell

    address = tcp_address(master, 5050)
    config = AgentConfig(
        hostname=hostname or socket.gethostname(),
        resources=agent_resources(work_dir, resources),
        work_dir=work_dir,
        attributes=parse_attributes(attributes),
        boot_id=boot_id(),
        kill_grace_period=kill_grace_period,
        master_silence_limit=master_silence_limit,
        update_retry_initial=update_retry_initial,
    )
    reactor = install_reactor()
    shell = AgentShell(reactor, AgentCore(config, lambda: uuid.uuid4().bytes), address)
    reactor.addSystemEventTrigger("before", "shutdown", shell.shutdown)
    reactor.callWhenRunning(shell.start)
    log.info("event=agent_starting master=%s resources=%s work_dir=%s", address, config.resources, work_dir)
    reactor.run()
