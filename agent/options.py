"""What ``tepui agent`` is started with: one frozen value instead of 27 keyword arguments.

The CLI (``cli/main.py``) builds it from the flags, after checking them; ``agent/main.py``'s
``run_agent`` reads it. The defaults are the flags' defaults, so a harness that starts an agent
in-process names only what it changes. Values are as the agent uses them: the CLI has already
turned ``--task-pids-max 0`` into None and split the comma lists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AgentOptions:
    master: str
    """Master HOST:PORT (port 5050 when left out): where the agent registers; or
    ``zk://h1:p1,h2:p2/path`` (HA masters): it follows the serving leader and re-registers at
    once when another takes over."""
    work_dir: str
    """Sandboxes, the checkpoint and the fetcher cache live here; a restart on the same
    directory recovers the tasks the previous agent left running."""
    resources: str | None = None
    """Overrides detected resources ('cpus:4;mem:2048;ports:[31000-32000]'); None: detected."""
    attributes: str | None = None
    """Placement attributes ('rack:r1;zone:a') frameworks' constraints match on."""
    hostname: str | None = None
    """Reported to the master; None: this machine's (two agents on one host need the work dir
    to tell their cgroups apart, not the hostname)."""
    kill_grace_period: float = 5.0
    """Seconds between SIGTERM and SIGKILL: a task gets that long to clean up."""
    master_silence_limit: float | None = None
    """Seconds without a word from the master before re-registering; None: 5 × the ping interval
    the master announces (10 s with its defaults), so it follows the master's settings."""
    update_retry_initial: float = 10.0
    """First retry interval of an unacknowledged status update (then doubled): updates must reach
    the framework, and a lost one is re-sent, not forgotten."""
    log_level: str = "info"
    """debug, info, warning or error."""
    isolation: str = "auto"
    """Per-task cgroups: auto (when the hierarchy is usable), cgroups (refuse to start without),
    none."""
    task_user: str | None = None
    """Tasks run as this user; None: ``nobody`` when the agent is root (never root by default)."""
    allowed_users: tuple[str, ...] = ()
    """Users a task may ask for in command.user (besides ``task_user``)."""
    pids_limit: int | None = 4096
    """Processes per task (cgroup pids limit): a fork bomb stays in its task; None: no limit."""
    containerizers: tuple[str, ...] = ("mesos", "docker")
    """Which containerizers are offered: mesos (processes) and/or docker."""
    docker_host: str | None = None
    """Docker engine address; None: $DOCKER_HOST or the local socket."""
    fetcher_cache_mib: int = 2048
    """Fetcher cache size per task user, MiB: URIs fetched again come from it."""
    http_port: int | None = None
    """The files API's port. None: 5051, or a free port (with a warning) when it is taken, so
    several agents fit on one machine; 0: a free port; any other: exactly that port or an exit."""
    ip: str = "127.0.0.1"
    """Address the HTTP API binds (0.0.0.0: all); loopback by default, nothing exposed."""
    advertise_ip: str | None = None
    """Address the master gives clients for this agent's HTTP API; None: ``ip``, or 127.0.0.1
    when ``ip`` binds everything."""
    sandbox_gc_delay: float = 604800.0
    """Seconds a finished task's sandbox is kept (a week, Mesos --gc_delay): for its logs."""
    strict: bool = True
    """On restart, refuse a damaged checkpoint naming the file (Mesos --strict); False discards
    the damaged part and recovers the rest."""
    reconfiguration_policy: str = "equal"
    """On restart, whether resources and attributes may differ from the checkpoint: equal (not at
    all) or additive (they may grow); Mesos --reconfiguration_policy."""
    http_token_file: str | None = None
    """The cluster's HTTP bearer token: the files API serves only callers that send it (the
    master's proxy does); None: it refuses every read."""
    http_read_auth: str | None = None
    """Whether /files and /usage need the token (open or token); None: token, open with
    ``insecure`` (agent/files_http.files_policy)."""
    fetcher_allowed_dirs: tuple[str, ...] = ()
    """Directories tasks may fetch local files from; none by default, so a task cannot copy
    another's files through the agent."""
    keys_dir: str | None = None
    """The agent's CURVE key pair and the master's public key (`tepui certs issue --agent`);
    required unless ``insecure``."""
    insecure: bool = False
    """Plain-text ZeroMQ to a master started with --insecure: for tests only."""
    tls_cert: str | None = None
    """PEM certificate: the files API serves TLS only (with ``tls_key``)."""
    tls_key: str | None = None
    """PEM private key for ``tls_cert``."""
