"""From an app spec and an offer to a task: does it fit (and if not, why), and the TaskInfo.

Why one module for both questions: "why isn't it running?" must give the reason the launcher
actually used, so the same function that builds the task decides whether it may: :func:`fit`
returns either a :class:`Fit` (the host ports chosen, the resources to take) or a sentence a
person can act on ("insufficient mem: needs 512, offer has 256").

What a task gets, following Marathon so that apps port over unchanged in spirit:

- Host ports: fixed ones where the spec names them, else the lowest free ports of the offer.
  ``PORT0``..``PORTn``, ``PORT`` (the first), ``PORTS`` (comma separated) and ``HOST`` in the
  environment, plus ``TEPUI_APP_ID``, ``TEPUI_APP_VERSION``, ``TEPUI_TASK_ID`` (Marathon's
  ``MARATHON_APP_*``).
- The app's labels, plus ``tepui.services/app`` and ``tepui.services/version``: tasks carry
  their app's labels (and a reconciled task can be traced back to its app).
- The first health check, run by the agent. Marathon probes from its own process; Tepui's agent
  probes next to the task (Mesos-style health checks), which scales with the cluster. The
  agent's first probe runs at once (``delay_seconds`` 0); failures inside the grace period are
  ignored until the first success, as in Marathon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tepui.frameworks.services.constraints import check as check_constraints
from tepui.frameworks.services.spec import AppSpec
from tepui.sdk import (
    CommandInfo, CommandURI, ContainerInfo, DockerInfo, HealthCheck, KillPolicy, Offer, Resources, TaskInfo,
)
from tepui.sdk.protocol.values import HTTPCheck, PortMapping, TCPCheck

APP_LABEL = "tepui.services/app"
VERSION_LABEL = "tepui.services/version"
NEVER_KILL = 2**31 - 1  # max_consecutive_failures 0: "never kill" (Marathon)


@dataclass(frozen=True)
class Fit:
    """A place for one task in an offer: the host ports picked, what it takes from the offer."""

    ports: tuple[int, ...]
    take: Resources


def offer_room(offer: Offer) -> Resources:
    """What an offer holds that this framework's tasks may use: unreserved resources (tasks ask
    for unreserved resources; reservations for the framework's role are a later addition)."""
    return Resources.from_wire(offer.resources).unreserved()


def _wanted_ports(spec: AppSpec) -> list[int]:
    if spec.container is not None and spec.container.network == "BRIDGE":
        return [m.host_port for m in spec.container.port_mappings]
    return [p.port for p in spec.ports]


def _pick_ports(wanted: Sequence[int], free: list[tuple[int, int]]) -> tuple[int, ...] | str:
    taken: set[int] = set()
    for port in wanted:
        if port and not any(lo <= port <= hi for lo, hi in free):
            return f"port {port} is not free on this agent"
        taken.add(port)
    chosen: list[int] = []
    for port in wanted:
        if port:
            chosen.append(port)
            continue
        found = None
        for lo, hi in free:
            for candidate in range(lo, hi + 1):
                if candidate not in taken:
                    found = candidate
                    break
            if found is not None:
                break
        if found is None:
            return f"insufficient ports: needs {len(wanted)}, offer has {sum(hi - lo + 1 for lo, hi in free)}"
        taken.add(found)
        chosen.append(found)
    return tuple(chosen)


def _ports_resources(ports: Sequence[int]) -> Resources:
    if not ports:
        return Resources()
    return Resources.parse("ports:[" + ",".join(f"{p}-{p}" for p in ports) + "]")


def fit(spec: AppSpec, offer: Offer, room: Resources, placed: Sequence[tuple[str, Mapping[str, str]]]) -> Fit | str:
    """Whether one more task of ``spec`` fits in ``room`` (what is left of ``offer``), with the
    instances already ``placed`` (hostname, attributes) for the constraints; else why not."""
    need = spec.task_resources()
    if not room.contains(need):
        missing = need.missing_from(room)
        parts = []
        for name in sorted(missing.names()):
            parts.append(f"insufficient {name}: needs {_num(need.scalar(name))}, offer has {_num(room.scalar(name))}")
        return "; ".join(parts) or f"insufficient resources: needs {need}"
    reason = check_constraints(spec.constraints, offer.hostname, offer.attributes, placed)
    if reason is not None:
        return reason
    ports = _pick_ports(_wanted_ports(spec), room.ranges("ports"))
    if isinstance(ports, str):
        return ports
    return Fit(ports, need + _ports_resources(ports))


def _num(value: float) -> str:
    return f"{value:g}"


def task_info(spec: AppSpec, version: str, task_id: str, offer: Offer, chosen: Fit) -> TaskInfo:
    """The TaskInfo of one instance of ``spec`` on ``offer`` with the ports of ``chosen``."""
    ports = list(chosen.ports)
    env = {
        **spec.env,
        "TEPUI_APP_ID": spec.id,
        "TEPUI_APP_VERSION": version,
        "TEPUI_TASK_ID": task_id,
        "HOST": offer.hostname,
    }
    for i, port in enumerate(ports):
        env[f"PORT{i}"] = str(port)
    if ports:
        env["PORT"] = str(ports[0])
        env["PORTS"] = ",".join(str(p) for p in ports)
    uris = [CommandURI(value=uri, extract=True) for uri in spec.uris]
    if spec.args is not None:
        command = CommandInfo(value=None, arguments=list(spec.args), shell=False, environment=env, uris=uris)
    else:
        command = CommandInfo(value=spec.command, shell=spec.command is not None, environment=env, uris=uris)
    container = None
    if spec.container is not None:
        c = spec.container
        mappings = []
        if c.network == "BRIDGE":
            mappings = [PortMapping(host_port=host, container_port=m.container_port, protocol=m.protocol)
                        for m, host in zip(c.port_mappings, ports)]
        container = ContainerInfo(type="DOCKER", docker=DockerInfo(
            image=c.image, network=c.network, port_mappings=mappings, privileged=c.privileged,
            parameters=dict(c.parameters), force_pull_image=c.force_pull_image))
    labels = {**spec.labels, APP_LABEL: spec.id, VERSION_LABEL: version}
    return TaskInfo(
        name=spec.id.strip("/").replace("/", "."),
        task_id=task_id,
        agent_id=offer.agent_id,
        resources=chosen.take.to_wire(),
        command=command,
        container=container,
        health_check=health_check(spec, ports),
        kill_policy=KillPolicy(grace_period_seconds=spec.kill_grace_period_seconds)
        if spec.kill_grace_period_seconds is not None else None,
        labels=labels,
    )


def health_check(spec: AppSpec, ports: Sequence[int]) -> HealthCheck | None:
    """The agent-side check for the app's first health check, with the host port resolved."""
    if not spec.health_checks:
        return None
    check = spec.health_checks[0]
    common: dict[str, Any] = dict(  # floats and an int: no one value type fits these keywords
        delay_seconds=0.0,
        interval_seconds=check.interval_seconds,
        timeout_seconds=check.timeout_seconds,
        consecutive_failures=check.max_consecutive_failures or NEVER_KILL,
        grace_period_seconds=check.grace_period_seconds,
    )
    if check.protocol == "COMMAND":
        return HealthCheck(type="COMMAND", command=CommandInfo(value=check.command), **common)
    index = check.effective_port_index
    port = check.port if index is None else ports[index]
    assert port is not None
    if check.protocol == "TCP":
        return HealthCheck(type="TCP", tcp=TCPCheck(port=port), **common)
    scheme = "https" if check.protocol == "HTTPS" else "http"
    return HealthCheck(type="HTTP", http=HTTPCheck(port=port, path=check.effective_path, scheme=scheme),
                       **common)
