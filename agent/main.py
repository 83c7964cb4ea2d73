"""``tepui agent``: detect resources, register with the master, run tasks."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from tepui.sdk.runtime import install_reactor
from tepui.sdk.shell import configure_logging
from tepui.sdk.transport import tcp_address
from tepui.sdk.zookeeper import ZkUnavailable, is_zk

if TYPE_CHECKING:
    from tepui.agent.options import AgentOptions
    from tepui.sdk.keys import ClientKeys

log = logging.getLogger("tepui.agent")


def run_agent(options: AgentOptions) -> None:
    """Runs an agent until it is stopped (SIGTERM, Ctrl-C; SIGUSR1 drains it first). Every
    refusal to start is a SystemExit that says what to change."""
    configure_logging(options.log_level, "agent")
    curve = agent_curve(options.keys_dir, options.insecure)
    from tepui.agent.core import AgentConfig, AgentCore
    from tepui.agent.probe import agent_resources, boot_id, gpu_ids, parse_attributes
    from tepui.agent.containerizers.cgroups import CgroupInUse, Cgroups
    from tepui.agent.checkpointing.checkpoint import Recovered
    from tepui.agent.checkpointing.checkpoint_store import CheckpointError, CheckpointStore
    from tepui.agent.checkpointing.recovery import reconfiguration_problem
    from tepui.agent.containerizers.docker_containerizer import DockerContainerizer
    from tepui.agent.fetching.fetcher import Fetcher
    from tepui.agent.containerizers.processes import resolve_user
    from tepui.agent.sandbox.files_http import build_root
    from tepui.agent.sandbox.sandbox_gc import SandboxGC
    from tepui.agent.shell import AgentShell
    from twisted.internet import threads

    address = options.master if is_zk(options.master) else tcp_address(options.master, 5050)
    name = options.hostname or socket.gethostname()
    cgroups = None
    if options.isolation != "none":
        agent_name = f"{name}-{hashlib.sha1(os.path.abspath(options.work_dir).encode()).hexdigest()[:8]}"
        try:
            cgroups = Cgroups.detect(agent_name)
        except CgroupInUse as exc:
            raise SystemExit(str(exc)) from None
        if cgroups is not None:
            swept = cgroups.sweep_siblings()
            if swept:
                log.info("event=stale_agent_cgroups_removed count=%d reason=\"empty, left by agents no longer "
                         "running\"", swept)
        if cgroups is None:
            if options.isolation == "cgroups":
                raise SystemExit("--isolation cgroups: no usable cgroup hierarchy here (the agent must run as root "
                                 "with cgroup v2 controllers cpu, memory, pids, or v1 hierarchies); use --isolation none")
            log.warning("event=no_isolation reason=\"cgroups unavailable (not root, or not mounted)\" "
                        "hint=\"tasks run without cpu/memory/pids limits\"")
    task_user = options.task_user
    if task_user is None and os.geteuid() == 0:
        task_user = "nobody"  # never root by default
    if task_user is not None:
        try:
            resolve_user(task_user)
        except LookupError as exc:
            raise SystemExit(f"--task-user: {exc}") from None
        blocked = _untraversable(options.work_dir)
        if blocked:
            log.warning("event=work_dir_not_traversable dir=%s task_user=%s hint=\"tasks run as %s cannot reach "
                        "their sandbox through it (getcwd fails); chmod o+x it or choose another --work-dir\"",
                        blocked, task_user, task_user)
    gpus = gpu_ids()
    offered = agent_resources(options.work_dir, options.resources, gpus)
    store = CheckpointStore(options.work_dir)
    current_boot = boot_id()
    previous_agent_id = None
    written_in = store.written_in_boot()
    if written_in and current_boot and written_in != current_boot:
        # The host rebooted: every task of the old agent ended with it. Register anew, naming
        # the old id if its record is readable (a crash may have left anything behind).
        previous_agent_id = store.previous_agent_id()
        moved = store.archive("before-reboot")
        log.warning("event=host_rebooted previous_agent_id=%s checkpoint_moved_to=%s hint=\"registering as a new "
                    "agent; the tasks of the old one ended with the reboot\"", previous_agent_id, moved)
    try:
        recovered: Recovered | None = store.load(options.strict)
    except CheckpointError as exc:
        raise SystemExit(str(exc)) from None
    if recovered is not None and recovered.agent is None:
        recovered = None
    if recovered is not None and recovered.agent is not None:
        problem = reconfiguration_problem(recovered.agent, name, offered, parse_attributes(options.attributes),
                                          options.reconfiguration_policy, store.root)
        if problem:
            raise SystemExit(problem)
    if int(offered.scalar("gpus")) > len(gpus):  # declared by --resources without nvidia-smi to list them
        gpus = tuple(range(int(offered.scalar("gpus"))))
    # The HTTP port is bound before the config is built: the agent registers with the port it
    # really has (0 and the 5051 fallback pick one), and the master tells clients where it is.
    reactor = install_reactor()
    shell: AgentShell | None = None

    def health() -> dict[str, object]:
        core = shell.core if shell is not None else None
        return {"healthy": True, "agent_id": core.agent_id if core else None,
                "registered": bool(core and core.registered), "tasks": len(core.tasks) if core else 0,
                "master_epoch": core.master_epoch if core else 0,
                "stale_epoch_dropped": core.stale_epoch_dropped if core else 0,
                "executor_subscribe_refused": core.executor_subscribe_refused if core else 0}

    def usage() -> dict[str, object]:
        """Per-task usage from the task cgroups (cpu seconds, memory now and at peak)."""
        tasks = []
        if shell is not None:
            for (framework_id, task_id) in list(shell.launcher.groups):
                measured = shell.launcher.usage((framework_id, task_id))
                if measured is not None:
                    tasks.append({"framework_id": framework_id, "task_id": task_id,
                                  "cpu_seconds": round(measured.cpu_seconds, 3), "memory_bytes": measured.memory_bytes,
                                  "memory_peak_bytes": measured.memory_peak_bytes})
        return {"tasks": tasks}

    from tepui.agent.sandbox.files_http import files_policy, files_site
    from tepui.sdk.http_security import tls_from_flags

    policy = files_policy(options.http_token_file, options.http_read_auth, options.insecure)
    tls = tls_from_flags(options.tls_cert, options.tls_key)
    site = files_site(build_root(options.work_dir, health, usage), policy,
                      lambda: shell.core.agent_id if shell is not None else None)
    bound_port = listen_http(reactor, site, options.ip, options.http_port, tls)
    advertised = options.advertise_ip or ("127.0.0.1" if options.ip in ("0.0.0.0", "", "::") else options.ip)
    endpoint_path = os.path.join(os.path.abspath(options.work_dir), "executors.sock")
    if len(endpoint_path) > 100:  # ipc:// paths are limited to about 107 bytes
        endpoint_path = f"/tmp/tepui-executors-{hashlib.sha1(endpoint_path.encode()).hexdigest()[:12]}.sock"
    config = AgentConfig(
        hostname=name,
        resources=offered,
        gpu_ids=gpus[: int(offered.scalar("gpus"))],
        work_dir=options.work_dir,
        attributes=parse_attributes(options.attributes),
        boot_id=current_boot,
        checkpoint=True,
        previous_agent_id=previous_agent_id,
        kill_grace_period=options.kill_grace_period,
        master_silence_limit=options.master_silence_limit,
        update_retry_initial=options.update_retry_initial,
        task_user=task_user,
        allowed_users=frozenset(options.allowed_users),
        docker_enabled="docker" in options.containerizers,
        executor_endpoint=f"ipc://{endpoint_path}",
        http_port=bound_port,
        address=advertised,
        http_tls=tls is not None,
    )
    docker = DockerContainerizer(reactor, options.docker_host) if "docker" in options.containerizers else None
    fetcher = Fetcher(reactor, os.path.join(options.work_dir, "fetcher-cache"),
                      cache_limit_bytes=options.fetcher_cache_mib * 1024 * 1024,
                      allowed_dirs=tuple(os.path.abspath(d) for d in options.fetcher_allowed_dirs))
    log.info("event=fetcher_local_files allowed_dirs=%s", ",".join(fetcher.allowed_dirs) or "none")
    core = AgentCore(config, lambda: uuid.uuid4().bytes)
    shell = AgentShell(reactor, core, address, cgroups, options.pids_limit, docker, fetcher, store, curve=curve)
    shell.recover(recovered)
    try:
        shell.follow()  # zk://: an unreachable ensemble stops the agent here, with what to do
    except ZkUnavailable as exc:
        raise SystemExit(f"--master {options.master}: {exc}") from None
    gc = SandboxGC(options.work_dir, options.sandbox_gc_delay, lambda: core.tasks.keys(), time.time,
                   lambda f, *a: threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *a))
    reactor.addSystemEventTrigger("before", "shutdown", shell.on_reactor_stop)
    # SIGTERM and Ctrl-C stop the agent and leave its tasks to the next one (recovery);
    # SIGUSR1 stops its tasks too, reports how they ended, and unregisters (Mesos).
    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(shell.drain))
    reactor.addSystemEventTrigger("before", "shutdown", gc.stop)
    reactor.callWhenRunning(shell.start)
    reactor.callWhenRunning(gc.start, reactor)
    log.info("event=agent_http_serving url=%s://%s:%d bind=%s http_read_auth=%s token=%s sandbox_gc_delay_s=%g",
             "https" if tls else "http", advertised, bound_port, options.ip, policy.read_auth,
             "yes" if policy.token else "none", options.sandbox_gc_delay)
    log.info("event=agent_starting master=%s resources=%s work_dir=%s isolation=%s task_user=%s", address,
             config.resources, options.work_dir, cgroups.describe() if cgroups else "none",
             task_user or "(agent's own)")
    reactor.run()


def agent_curve(keys_dir: str | None, insecure: bool) -> ClientKeys | None:
    """Secure by default: the agent's key pair and the master's public key from ``--keys DIR``,
    or a refusal to start that says how to get them; ``--insecure`` only with a warning."""
    from tepui.sdk.keys import KeyStoreError, load_client_keys

    if keys_dir is None:
        if not insecure:
            raise SystemExit("the agent needs CURVE keys: issue them on the master's key store with `tepui certs "
                             "issue --agent NAME --out DIR` and start with --keys DIR (or use `tepui up`); "
                             "--insecure talks plain text to a master started with --insecure, for tests only")
        log.warning("event=insecure_mode hint=\"--insecure: the link to the master is plain text and "
                    "unauthenticated; use --keys DIR outside tests\"")
        return None
    if insecure:
        raise SystemExit("give either --keys DIR or --insecure, not both")
    try:
        keys = load_client_keys(keys_dir)
    except KeyStoreError as exc:
        raise SystemExit(str(exc)) from None
    log.info("event=curve_enabled public_key=%s master_public_key=%s", keys.public.decode(), keys.server.decode())
    return keys


def listen_http(reactor: Any, site: Any, ip: str, port: int | None, tls: Any = None) -> int:
    """Binds the agent's HTTP API (HTTPS only with a ``tls`` context); returns the port really bound."""
    from twisted.internet.error import CannotListenError

    from tepui.agent.sandbox.files_http import DEFAULT_HTTP_PORT

    def bind(number: int) -> Any:
        if tls is not None:
            return reactor.listenSSL(number, site, tls, interface=ip)
        return reactor.listenTCP(number, site, interface=ip)

    try:
        listening = bind(DEFAULT_HTTP_PORT if port is None else port)
    except CannotListenError as exc:
        if port is not None:
            raise SystemExit(f"--http-port {port}: cannot listen on {ip}:{port}: {exc.socketError}; "
                             "choose another port, or 0 for any free one") from None
        # Several agents on one machine (`tepui up`): the first has 5051, the others any port.
        listening = bind(0)
        log.warning("event=http_port_taken port=%d bound=%d hint=\"another process (another agent?) has %d; "
                    "this agent serves its HTTP API on %d and tells the master so\"", DEFAULT_HTTP_PORT,
                    listening.getHost().port, DEFAULT_HTTP_PORT, listening.getHost().port)
    return int(listening.getHost().port)


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
