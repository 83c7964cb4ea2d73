"""What a Docker task becomes: the pure translation of a ``TaskInfo`` into a container spec.

No engine, no threads: ``container_spec`` reads the task and either returns every argument the
engine needs or raises ``LaunchError`` with the sentence a framework will see. Kept apart from
``docker_containerizer`` (which talks to the engine) so that it is tested without one.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass


from tepui.agent.containerizers.processes import command_argv
from tepui.sdk.protocol.values import TaskInfo

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
SANDBOX_MOUNT = "/mnt/mesos/sandbox"
LABEL_TASK_ID = "tepui.task_id"
LABEL_FRAMEWORK_ID = "tepui.framework_id"
LABEL_AGENT_ID = "tepui.agent_id"
MIN_MEMORY_MIB = 6  # the engine refuses smaller memory limits
SIGNALS = {"TERM": 15, "KILL": 9}
NETWORKS = {"BRIDGE": "bridge", "HOST": "host", "NONE": "none"}
PROTOCOLS = ("tcp", "udp", "sctp")
LOG_DRAIN_SECONDS = 10.0  # after exit, how long the log follower may take to reach the end

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

@dataclass(frozen=True)
class ContainerExit:
    exit_code: int | None  # the container's real exit code
    signal: int | None = None  # if killed by a signal we sent (TERM/KILL), its number, else None
    oom_killed: bool = False  # State.OOMKilled from the engine
    message: str | None = None  # a human sentence for failures


class LaunchError(Exception):
    """The container could not start; ``message`` says why, in a sentence for TASK_FAILED."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- the container a task asks for (pure) --------------------------------------------------------


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    labels: dict[str, str]
    nano_cpus: int | None
    cpu_shares: int | None
    mem_bytes: int | None
    network_mode: str
    port_bindings: dict[str, list[int]]  # "8080/tcp" -> host ports
    mounts: list[tuple[str, str, bool]]  # (host path, container path, read only)
    hostname: str | None
    privileged: bool
    force_pull: bool


def container_name(framework_id: str, task_id: str) -> str:
    """``tepui-<framework>-<task>-<hash>``: readable, within Docker's ``[a-zA-Z0-9_.-]``, and
    unique per (framework, task) even where sanitizing or truncating makes two ids alike."""
    digest = hashlib.sha256(f"{framework_id}\0{task_id}".encode()).hexdigest()[:12]
    readable = _NAME_UNSAFE.sub("_", f"tepui-{framework_id}-{task_id}")[:100]
    return f"{readable}-{digest}"


def container_spec(task: TaskInfo, sandbox: str, framework_id: str, agent_id: str,
                   environment: dict[str, str], *, allow_privileged: bool = False) -> ContainerSpec:
    """What to create for ``task``; raises :class:`LaunchError` for anything refused."""
    container = task.container
    if container is None or container.docker is None or not container.docker.image:
        raise LaunchError("task has no container.docker.image to run")
    info = container.docker
    image = info.image
    if info.privileged and not allow_privileged:
        raise LaunchError(f"privileged containers are not allowed on this agent (task {task.task_id}, image {image})")
    if info.parameters:
        raise LaunchError("docker parameters are not supported (they bypass the agent's limits): "
                          + ", ".join(sorted(info.parameters)))
    network = (info.network or "BRIDGE").upper()
    if network not in NETWORKS:
        raise LaunchError(f"docker network {info.network} is not supported; use BRIDGE, HOST or NONE")

    entrypoint: list[str] | None = None
    command: list[str] | None = None
    cmd = task.command
    if cmd is not None and cmd.shell:
        if cmd.value:
            entrypoint, command = ["/bin/sh", "-c"], [cmd.value]
    elif cmd is not None:
        argv = command_argv(cmd)
        if argv and argv != [""]:
            command = argv

    sandbox = os.path.abspath(sandbox)
    env = {"TINI_KILL_PROCESS_GROUP": "1"}
    env.update(environment)
    if cmd is not None:
        env.update(cmd.environment)
    env["MESOS_SANDBOX"] = SANDBOX_MOUNT
    if "TEPUI_SANDBOX" in env:
        env["TEPUI_SANDBOX"] = SANDBOX_MOUNT
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise LaunchError(f"environment variable {key!r} cannot be passed to a container")

    cpus = _scalar(task, "cpus")
    mem = _scalar(task, "mem")
    if mem is not None and mem < MIN_MEMORY_MIB:
        raise LaunchError(f"mem {mem:g} MiB is below Docker's minimum of {MIN_MEMORY_MIB} MiB")

    port_bindings: dict[str, list[int]] = {}
    if info.port_mappings:
        if network != "BRIDGE":
            raise LaunchError(f"port mappings need the BRIDGE network, not {network}")
        offered = _ranges(task, "ports")
        for mapping in info.port_mappings:
            proto = (mapping.protocol or "tcp").lower()
            if proto not in PROTOCOLS:
                raise LaunchError(f"port mapping protocol {mapping.protocol} is not one of {', '.join(PROTOCOLS)}")
            for port in (mapping.host_port, mapping.container_port):
                if not 0 < port < 65536:
                    raise LaunchError(f"port {port} is not a valid port number")
            if not any(begin <= mapping.host_port <= end for begin, end in offered):
                raise LaunchError(f"host port {mapping.host_port} is not among the task's port resources "
                                  f"({_show_ranges(offered)})")
            port_bindings.setdefault(f"{mapping.container_port}/{proto}", []).append(mapping.host_port)

    mounts: list[tuple[str, str, bool]] = [(sandbox, SANDBOX_MOUNT, False)]
    for volume in container.volumes:
        if not volume.host_path:
            raise LaunchError(f"volume {volume.container_path} has no host_path; only host volumes are supported")
        mode = (volume.mode or "RW").upper()
        if mode not in ("RW", "RO"):
            raise LaunchError(f"volume {volume.container_path} has mode {volume.mode}; use RW or RO")
        # Mesos semantics: relative paths are relative to the sandbox (host and container side).
        host = os.path.normpath(os.path.join(sandbox, volume.host_path))
        target = os.path.normpath(os.path.join(SANDBOX_MOUNT, volume.container_path))
        mounts.append((host, target, mode == "RO"))
    targets = [target for _, target, _ in mounts]
    for target in targets:
        if targets.count(target) > 1:
            raise LaunchError(f"two volumes are mounted at {target}")

    hostname = container.hostname
    if hostname and network == "HOST":
        raise LaunchError("a hostname cannot be set on the HOST network")

    return ContainerSpec(
        name=container_name(framework_id, task.task_id),
        image=image,
        entrypoint=entrypoint,
        command=command,
        environment=env,
        labels={LABEL_TASK_ID: task.task_id, LABEL_FRAMEWORK_ID: framework_id, LABEL_AGENT_ID: agent_id},
        nano_cpus=round(cpus * 1e9) if cpus else None,
        cpu_shares=max(2, round(cpus * 1024)) if cpus else None,
        mem_bytes=round(mem * 1024 * 1024) if mem else None,
        network_mode=NETWORKS[network],
        port_bindings=port_bindings,
        mounts=mounts,
        hostname=hostname or None,
        privileged=info.privileged,
        force_pull=info.force_pull_image,
    )


def _scalar(task: TaskInfo, name: str) -> float | None:
    values = [r.scalar for r in task.resources if r.name == name and r.scalar is not None]
    return sum(values) if values else None


def _ranges(task: TaskInfo, name: str) -> list[tuple[int, int]]:
    return [(rng.begin, rng.end) for r in task.resources if r.name == name for rng in (r.ranges or [])]


def _show_ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{b}-{e}" for b, e in ranges) or "none"


# --- the containerizer (I/O) ----------------------------------------------------------------------


