"""What ``tepui master`` is started with: one frozen value instead of 29 keyword arguments.

The CLI (``cli/main.py``) builds it from the flags, after parsing them; ``master/main.py``'s
``run_master`` reads it. The defaults are the flags' defaults, so a harness that starts a master
in-process names only what it changes. Values are as the master uses them: the CLI has already
turned ``--offer-timeout 0`` into None and parsed the rates and allow rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tepui.master.admission.rate_limits import DEFAULT_RATE_LIMIT, RateLimit
from tepui.sdk.zookeeper import DEFAULT_SESSION_TIMEOUT

if TYPE_CHECKING:
    from tepui.master.http.relay_guard import AllowRule
    from tepui.master.failures.partitions import RemovalRate


@dataclass(frozen=True)
class MasterOptions:
    ip: str = "0.0.0.0"
    """Address to bind (ZeroMQ and HTTP); 0.0.0.0 or * binds every interface."""
    port: int = 5050
    """ZeroMQ port agents and frameworks talk to."""
    http_port: int = 5080
    """HTTP port (/state, /health, /metrics, the operator calls)."""
    advertise_ip: str | None = None
    """Address others reach this master at; None: ``ip``, or 127.0.0.1 when ``ip`` binds all."""
    hostname: str | None = None
    """Reported in /state; None: this machine's."""
    agent_ping_interval: float = 2.0
    """Seconds between application pings to agents: how fast a silent agent is noticed."""
    max_agent_ping_timeouts: int = 5
    """Ping intervals without an answer before an agent is unreachable (2 s × 5 = 10 s; Mesos
    waits 15 s × 5 = 75 s)."""
    heartbeat_interval: float = 15.0
    """Seconds between heartbeats to frameworks, so they notice a silent master."""
    allocation_interval: float = 1.0
    """Seconds between batch allocations (changes also trigger immediate incremental ones)."""
    offer_timeout: float | None = 60.0
    """Seconds before an unanswered offer is rescinded, so a stuck framework does not sit on
    resources; None: never."""
    log_level: str = "info"
    """debug, info, warning or error."""
    work_dir: str | None = None
    """Where the registry (registry.db) lives, kept across restarts; None: in memory."""
    agent_reregister_timeout: float = 600.0
    """After a restart, seconds agents have to re-register before they are unreachable."""
    agent_removal_rate: RemovalRate | None = None
    """At most N agents marked unreachable per duration (Mesos --agent_removal_rate_limit), so a
    network split does not empty the cluster at once; None: unlimited."""
    agent_gone_timeout: float = 86400.0
    """Seconds an agent may stay unreachable before it is gone: its tasks end TASK_GONE and it
    may never re-register under its id."""
    recovery_agent_removal_limit: float = 100.0
    """Percent: after a restart, if more of the registry's agents than this have not come back
    when ``agent_reregister_timeout`` ends, the master exits rather than mark them unreachable
    (a wrong registry, not a dead cluster)."""
    http_token_file: str | None = None
    """The bearer token mutating HTTP calls need (also sent to agents' files API); None: those
    calls are refused."""
    http_read_auth: str = "open"
    """Whether reads need the token too (open or token); /health is always open."""
    tls_cert: str | None = None
    """PEM certificate: the HTTP API serves TLS only (with ``tls_key``)."""
    tls_key: str | None = None
    """PEM private key for ``tls_cert``."""
    allow_host_volumes: bool = False
    """Let tasks mount host paths outside their sandbox; refused (TASK_ERROR) by default."""
    acls_path: str | None = None
    """ACL file (YAML), re-read on SIGHUP; None: built-in permissive ACLs (never root), with a
    warning."""
    framework_rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT
    """Calls per principal (per framework without one): one client cannot flood the master;
    None: unlimited."""
    keys_dir: str | None = None
    """The master's CURVE key pair and the allow list of client keys (`tepui certs init`);
    required unless ``insecure``."""
    insecure: bool = False
    """Plain-text ZeroMQ, any peer may claim any identity: for tests only."""
    zmq_heartbeat_interval: float = 5.0
    """Seconds between ZeroMQ heartbeats to each peer (0: off). At ~10,000 agents libzmq's timer
    bookkeeping for them saturates its I/O thread (bench/scale.py): raise it there."""
    max_agent_pings_per_second: float | None = 2000.0
    """On a large cluster the ping interval grows to stay under this rate (Nomad's
    max_heartbeats_per_second); None: never grows."""
    proxy_allow: tuple[AllowRule, ...] = ()
    """Loopback, link-local or own addresses /frameworks/<name>/ may relay to (refused by
    default: the proxy must not reach what only this host should)."""
    agent_ca: str | None = None
    """PEM CA certificates agents' TLS files APIs are verified against; None: the system's."""
    zk: str | None = None
    """``zk://HOST:PORT,.../PATH``: run as one of several masters, a standby until elected, with
    the registry in ZooKeeper (master/leadership/ha.py); None: a single master."""
    zk_session_timeout: float = DEFAULT_SESSION_TIMEOUT
    """Seconds; the ZooKeeper session timeout, which bounds a failover (docs/operations.md)."""
