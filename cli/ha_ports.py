"""Which ports ``tepui up --ha`` uses, all derived from ``--port`` and ``--http-port``: a pure
plan, checked for collisions before anything is started.

For ``--port 5050 --http-port 5080`` (the defaults)::

    masters          ZeroMQ 5050, 5051, 5052       HTTP 5080, 5081, 5082     (port + i, http + i)
    services         API 5090 (instance 1), 5093 (instance 2)                (http + 10 + 3j)
    batch            API 5091, 5094                                          (http + 11 + 3j)
    cron             API 5092, 5095                                          (http + 12 + 3j)
    ZooKeeper        clients 21050-21052, quorum 21060-21062, election 21070-21072
                     (the local ensemble only: base = port + 16000, cli/ensemble.py's layout)
    agents           files API: any free port (--http-port 0); tasks 31000-32000, shared out

Why these:

- **Instance 1 of each framework keeps the port a single ``tepui up`` gives it** (http + 10, + 11,
  + 12), so what people know about a local cluster stays true; the second instances follow in
  the same order. The masters relay ``/frameworks/<name>/`` to every instance's port (their
  ``--proxy-allow``), as the leader may be either.
- **Agents get ``--http-port 0``.** An agent's files API defaults to 5051, "or a free port when
  it is taken": started beside three masters it could take 5051 before the second master binds
  it, and that master would fail on every restart. With 0 the kernel picks an ephemeral port
  (32768 and up here), which no planned port is, and the master tells clients where it is.
- **The ensemble sits at port + 16000**, so ``tepui up --ha`` on other ports (with their own
  state dirs) starts other ensembles rather than colliding with or reusing this one; 21050 is
  below the ephemeral range and clear of ``scripts/test``'s ZooKeepers (21810-21833). Two
  clusters whose ``--port`` differ by less than 23 would share ensemble ports: the collision is
  reported (a port in use) rather than guessed around. Past 49512 it goes 16000 below instead.
"""

from __future__ import annotations

from dataclasses import dataclass

MASTER_COUNT = 3
FRAMEWORKS = ("services", "batch", "cron")
FRAMEWORK_OFFSET = 10  # http + 10: the services framework's API, as with one master
ENSEMBLE_OFFSET = 16000
ENSEMBLE_SPAN = 23  # cli/ensemble.py: base..base+2 clients, +10.. quorum, +20.. election (3 servers)
ENSEMBLE_SERVERS = 3
AGENT_TASK_PORTS = (31000, 32000)  # what the agents of `tepui up` offer to tasks (cli/up.py agent_ports)
LOWEST_PORT = 1024


@dataclass(frozen=True)
class MasterPorts:
    name: str  # master-1, ...
    port: int  # ZeroMQ
    http_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass(frozen=True)
class InstancePorts:
    framework: str  # services, batch, cron
    name: str  # services-1, ...
    http_port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass(frozen=True)
class HaPortPlan:
    masters: tuple[MasterPorts, ...]
    instances: tuple[InstancePorts, ...]
    ensemble_base: int

    def instances_of(self, framework: str) -> tuple[InstancePorts, ...]:
        return tuple(i for i in self.instances if i.framework == framework)

    def ensemble_ports(self) -> tuple[int, ...]:
        return tuple(self.ensemble_base + offset + i for offset in (0, 10, 20) for i in range(ENSEMBLE_SERVERS))

    def process_ports(self) -> tuple[tuple[int, str], ...]:
        """Every port a master or framework instance binds, with what it is for (the words of an
        error message)."""
        ports: list[tuple[int, str]] = []
        for m in self.masters:
            ports += [(m.port, f"{m.name}'s ZeroMQ port"), (m.http_port, f"{m.name}'s HTTP port")]
        ports += [(i.http_port, f"{i.name}'s API port") for i in self.instances]
        return tuple(ports)

    def all_ports(self, with_ensemble: bool) -> tuple[tuple[int, str], ...]:
        ensemble = tuple((p, "a port of the local ZooKeeper ensemble") for p in self.ensemble_ports()) if with_ensemble else ()
        return self.process_ports() + ensemble


def framework_port(http_port: int, framework: str, instance: int) -> int:
    """Instance ``instance`` (1-based) of ``framework``'s API port."""
    return http_port + FRAMEWORK_OFFSET + FRAMEWORKS.index(framework) + len(FRAMEWORKS) * (instance - 1)


def ensemble_base(port: int) -> int:
    """The local ensemble's first client port for a cluster on ZeroMQ ``port`` (module docstring)."""
    up = port + ENSEMBLE_OFFSET
    return up if up + ENSEMBLE_SPAN - 1 <= 65535 else port - ENSEMBLE_OFFSET


def plan(port: int, http_port: int, instances: int = 2) -> HaPortPlan:
    masters = tuple(MasterPorts(f"master-{i + 1}", port + i, http_port + i) for i in range(MASTER_COUNT))
    frameworks = tuple(InstancePorts(name, f"{name}-{j}", framework_port(http_port, name, j))
                       for j in range(1, instances + 1) for name in FRAMEWORKS)
    return HaPortPlan(masters, frameworks, ensemble_base(port))


def collisions(plan: HaPortPlan, with_ensemble: bool) -> list[str]:
    """What is wrong with ``plan``, in words: a port used twice, out of range, or inside the agents'
    task port range. Empty when nothing is."""
    problems: list[str] = []
    seen: dict[int, str] = {}
    low, high = AGENT_TASK_PORTS
    for number, what in plan.all_ports(with_ensemble):
        if not LOWEST_PORT <= number <= 65535:
            problems.append(f"port {number} ({what}) is outside {LOWEST_PORT}-65535")
        elif number in seen:
            problems.append(f"port {number} would be both {seen[number]} and {what}")
        elif low <= number <= high:
            problems.append(f"port {number} ({what}) is in the agents' task port range {low}-{high}")
        seen.setdefault(number, what)
    return problems
