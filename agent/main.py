"""``tepui agent``: detect resources, register with the master, run tasks."""

from __future__ import annotations

import hashlib
import logging
import os
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
    isolation: str = "auto",
    task_user: str | None = None,
    allowed_users: tuple[str, ...] = (),
    pids_limit: int | None = 4096,
    containerizers: tuple[str, ...] = ("mesos", "docker"),
    docker_host: str | None = None,
    fetcher_cache_mib: int = 2048,
) -> None:
    configure_logging(log_level, "agent")
    from tepui.agent.core import AgentConfig, AgentCore
    from tepui.agent.probe import agent_resources, boot_id, gpu_ids, parse_attributes
    from tepui.agent.cgroups import Cgroups
    from tepui.agent.docker_containerizer import DockerContainerizer
    from tepui.agent.fetcher import Fetcher
    from tepui.agent.processes import resolve_user
    from tepui.agent.shell import AgentShell

    address = tcp_address(master, 5050)
    name = hostname or socket.gethostname()
    cgroups = None
    if isolation != "none":
        agent_name = f"{name}-{hashlib.sha1(os.path.abspath(work_dir).encode()).hexdigest()[:8]}"
        cgroups = Cgroups.detect(agent_name)
        if cgroups is None:
            if isolation == "cgroups":
                raise SystemExit("--isolation cgroups: no usable cgroup hierarchy here (the agent must run as root "
                                 "with cgroup v2 controllers cpu, memory, pids, or v1 hierarchies); use --isolation none")
            log.warning("event=no_isolation reason=\"cgroups unavailable (not root, or not mounted)\" "
                        "hint=\"tasks run without cpu/memory/pids limits\"")
    if task_user is None and os.geteuid() == 0:
        task_user = "nobody"  # never root by default
    if task_user is not None:
        try:
            resolve_user(task_user)
        except LookupError as exc:
            raise SystemExit(f"--task-user: {exc}") from None
        blocked = _untraversable(work_dir)
        if blocked:
            log.warning("event=work_dir_not_traversable dir=%s task_user=%s hint=\"tasks run as %s cannot reach "
                        "their sandbox through it (getcwd fails); chmod o+x it or choose another --work-dir\"",
                        blocked, task_user, task_user)
    offered = agent_resources(work_dir, resources)
    gpus = gpu_ids()
    if int(offered.scalar("gpus")) > len(gpus):  # declared by --resources without nvidia-smi to list them
        gpus = tuple(range(int(offered.scalar("gpus"))))
    config = AgentConfig(
        hostname=name,
        resources=offered,
        gpu_ids=gpus[: int(offered.scalar("gpus"))],
        work_dir=work_dir,
        attributes=parse_attributes(attributes),
        boot_id=boot_id(),
        kill_grace_period=kill_grace_period,
        master_silence_limit=master_silence_limit,
        update_retry_initial=update_retry_initial,
        task_user=task_user,
        allowed_users=frozenset(allowed_users),
        docker_enabled="docker" in containerizers,
    )
    reactor = install_reactor()
    docker = DockerContainerizer(reactor, docker_host) if "docker" in containerizers else None
    fetcher = Fetcher(reactor, os.path.join(work_dir, "fetcher-cache"), cache_limit_bytes=fetcher_cache_mib * 1024 * 1024)
    shell = AgentShell(reactor, AgentCore(config, lambda: uuid.uuid4().bytes), address, cgroups, pids_limit,
                       docker, fetcher)
    reactor.addSystemEventTrigger("before", "shutdown", shell.shutdown)
    reactor.callWhenRunning(shell.start)
    log.info("event=agent_starting master=%s resources=%s work_dir=%s isolation=%s task_user=%s", address,
             config.resources, work_dir, cgroups.describe() if cgroups else "none", task_user or "(agent's own)")
    reactor.run()


def _untraversable(path: str) -> str | None:
    """The first directory above ``path`` that others may not search (mode without o+x)."""
    current = os.path.abspath(path)
    while True:
        parent = os.path.dirname(current)
        if parent == current:
            return None
        try:
            if not os.stat(parent).st_mode & 0o001:
                return parent
        except OSError:
            return None
        current = parent
