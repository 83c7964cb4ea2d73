"""The master core's configuration: every knob of the pure core, with the Mesos default it
follows or departs from (``tepui master`` flags map onto it in master/main.py)."""

from __future__ import annotations

from dataclasses import dataclass

from tepui.master.admission.acls import PERMISSIVE, Acls
from tepui.master.admission.rate_limits import DEFAULT_RATE_LIMIT, RateLimit
from tepui.master.failures.partitions import RemovalRate


@dataclass(frozen=True)
class MasterConfig:
    master_id: str
    hostname: str = "localhost"
    address: str = "127.0.0.1:5050"
    http_port: int | None = 5080
    version: str = "0.1.0"
    epoch: int = 1
    allocation_interval: float = 1.0
    heartbeat_interval: float = 15.0
    # Silent for 2 s × 5 = 10 s → unreachable (Mesos: 15 s × 5 = 75 s); see master/failures/partitions.py.
    agent_ping_interval: float = 2.0
    max_agent_ping_timeouts: int = 5
    # The interval grows with the cluster so that pings stay under this rate (Nomad's
    # max_heartbeats_per_second): 2 s up to 4,000 agents, 5 s at 10,000. None: never grows.
    max_agent_pings_per_second: float | None = 2000.0
    offer_timeout: float | None = 60.0
    max_completed_frameworks: int = 50
    agent_reregister_timeout: float = 600.0  # Mesos: 10 min after a master failover
    agent_removal_rate: RemovalRate | None = None  # Mesos --agent_removal_rate_limit: unlimited
    agent_gone_timeout: float = 86400.0  # unreachable for a day → gone, refused under its id
    recovery_agent_removal_limit: float = 100.0  # percent missing after a failover before exiting (Mesos)
    max_gone_agents: int = 10000  # gone agents the registry remembers (oldest forgotten first)
    allow_host_volumes: bool = False  # container volumes with host paths outside the sandbox (issue 6)
    acls: Acls = PERMISSIVE  # --acls FILE; see master/admission/acls.py and docs/security.md
    framework_rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT  # per principal; None: unlimited
    # Seeds the allocator's shuffle of the agents of every cycle (Mesos shuffles them): the same
    # seed and the same events give the same offers (tests on a fake clock, simulations).
    allocation_seed: int = 0
    # The registry is kept on disk (--work-dir): every framework a previous master admitted and
    # did not remove is recovered, so a SUBSCRIBE with an unknown id is refused (see
    # master/admission/framework_checks.py, claimed_id_problem).
    durable_registry: bool = False
