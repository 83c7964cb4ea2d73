"""The one ``tepui`` command (click + rich)."""

from __future__ import annotations

import os
from typing import Any

import click

from tepui.cli.apps import apps_command
from tepui.cli.batch import batch_command
from tepui.cli.certs import certs_command
from tepui.cli.cron import cron_command
from tepui.cli.jobs import jobs_command
from tepui.cli.logs import logs_command
from tepui.sdk.zookeeper import DEFAULT_SESSION_TIMEOUT
from tepui.cli.run import run_command
from tepui.cli.services import services_command
from tepui.cli.sim import sim_command
from tepui.cli.state import state_command
from tepui.cli.up import up_command

DEFAULT_MASTER = os.environ.get("TEPUI_MASTER", "127.0.0.1:5050")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="tepui")
def cli() -> None:
    """Tepui: a two-level, offer-based cluster scheduler.

    Start a local cluster with `tepui up`, then `tepui run -- echo hello`.
    """


def _removal_rate(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    from tepui.master.failures.partitions import parse_removal_rate

    try:
        return parse_removal_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _proxy_allow(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    from tepui.master.http.relay_guard import parse_allow

    try:
        return tuple(parse_allow(entry) for entry in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _percent(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from tepui.master.failures.partitions import parse_percent

    try:
        return parse_percent(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.option("--ip", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option("--port", default=5050, show_default=True, help="ZeroMQ port for agents and frameworks.")
@click.option("--http-port", default=5080, show_default=True, help="HTTP port (/state, /health, /metrics).")
@click.option("--advertise-ip", default=None, help="Address others reach this master at (default: --ip, or 127.0.0.1).")
@click.option("--hostname", default=None, help="Hostname to report (default: this machine's).")
@click.option("--agent-ping-interval", type=click.FloatRange(0, min_open=True), default=2.0, show_default=True,
              help="Seconds between application pings to agents.")
@click.option("--max-agent-ping-timeouts", type=click.IntRange(1), default=5, show_default=True,
              help="Ping intervals without an answer before an agent is marked unreachable (by default "
              "2 s x 5 = 10 s; Mesos waits 15 s x 5 = 75 s).")
@click.option("--heartbeat-interval", default=15.0, show_default=True, help="Seconds between heartbeats to frameworks.")
@click.option("--allocation-interval", default=1.0, show_default=True, help="Seconds between batch allocations.")
@click.option("--offer-timeout", default=60.0, show_default=True, help="Seconds before an unanswered offer is rescinded (0: never).")
@click.option("--work-dir", default=None, help="Keep the registry (agents, frameworks, weights, quotas, reservations) here; in memory without it.")
@click.option("--agent-reregister-timeout", default=600.0, show_default=True,
              help="After a restart, seconds agents have to re-register before they are marked unreachable.")
@click.option("--agent-removal-rate", default="unlimited", show_default=True, callback=_removal_rate,
              help="At most N agents marked unreachable per duration, e.g. 1/20mins, 5/1m, 1/30s "
              "(Mesos --agent_removal_rate_limit); silent agents wait their turn and one that answers again "
              "is not removed.")
@click.option("--agent-gone-timeout", type=click.FloatRange(0, min_open=True), default=86400.0, show_default=True,
              help="Seconds an agent may stay unreachable before it is gone: its tasks end TASK_GONE (LOST) and "
              "it may never re-register under its id.")
@click.option("--recovery-agent-removal-limit", default="100%", show_default=True, callback=_percent,
              help="After a restart, if more than this share of the registry's agents has not re-registered "
              "when --agent-reregister-timeout ends, the master exits instead of marking them unreachable.")
@click.option("--http-token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the bearer token that mutating HTTP calls (/weights, /quota) need, and that the "
              "master sends to agents' files API. Without it those calls are refused (401). `tepui up` makes one.")
@click.option("--http-read-auth", type=click.Choice(["open", "token"]), default="open", show_default=True,
              help="Whether reads (/state, /metrics, /roles, GETs, task files) need the token too; /health is "
              "always open.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="PEM certificate: serve the HTTP API over TLS only (with --tls-key).")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, help="PEM private key for --tls-cert.")
@click.option("--agent-ca", type=click.Path(dir_okay=False), default=None,
              help="PEM CA certificate(s) that agents serving their files API over TLS (agent --tls-cert) are "
              "verified against (default: the system's trust store).")
@click.option("--proxy-allow", multiple=True, callback=_proxy_allow, metavar="ADDRESS[/PREFIX][:PORT]",
              help="Let /frameworks/<name>/ relay to a loopback, link-local or this host's own address, refused "
              "by default (e.g. 127.0.0.1:5090, 10.0.0.0/8, [::1]:5090; repeatable). The master's own ports are "
              "never relayed to. `tepui up` allows its services framework.")
@click.option("--allow-host-volumes", is_flag=True, default=False,
              help="Let tasks mount host paths outside their sandbox (container volumes with an absolute or '..' "
              "host_path); refused with TASK_ERROR by default.")
@click.option("--acls", "acls_path", type=click.Path(dir_okay=False), default=None,
              help="ACL file (YAML): who may register in which roles, run tasks as which users, reserve, tear "
              "down; what no rule allows is denied. Re-read on SIGHUP. Without it every principal may do "
              "everything except run tasks as root. `tepui up` writes one.")
@click.option("--framework-rate-limit", default="1000/s", show_default=True,
              help="Calls per principal (per framework without one), e.g. 1000/s or 600/m, or 'unlimited'; "
              "calls over it get an ERROR and are dropped.")
@click.option("--framework-rate-burst", type=click.FloatRange(1), default=None,
              help="Calls a principal may send at once before --framework-rate-limit applies (default: 5 s worth).")
@click.option("--keys", type=click.Path(file_okay=False), default=None,
              help="Key store from `tepui certs init DIR`: the master's CURVE key pair and the allow list of client "
              "keys (re-read when it changes, or on SIGHUP). Required unless --insecure.")
@click.option("--insecure", is_flag=True,
              help="No CurveZMQ: plain-text ZeroMQ, any peer may connect and claim any identity. For tests only.")
@click.option("--zmq-heartbeat-interval", type=click.FloatRange(0), default=5.0, show_default=True,
              help="Seconds between ZeroMQ heartbeats to each connected peer (a silent peer is dropped after "
              "three); 0 turns them off. At ~10,000 agents libzmq's timer bookkeeping for them saturates its I/O "
              "thread (bench/scale.py): raise it there; agents are still watched by the application pings.")
@click.option("--max-agent-pings-per-second", type=click.FloatRange(0), default=2000.0, show_default=True,
              help="On a cluster so large that pings every --agent-ping-interval would pass this rate, the "
              "interval grows to stay under it (2 s up to 4,000 agents, 5 s at 10,000; Nomad's "
              "max_heartbeats_per_second); agents hear the interval in each ping. 0: never grows.")
@click.option("--zk", default=None, metavar="zk://HOST:PORT,.../PATH",
              help="Run as one of several masters on this ZooKeeper ensemble: a standby until elected, the "
              "registry in ZooKeeper (replaces --work-dir). Without it: a single master.")
@click.option("--zk-session-timeout", type=click.FloatRange(0.2, 60), default=DEFAULT_SESSION_TIMEOUT,
              show_default=True, help="Seconds; bounds a failover (docs/operations.md, \"Failover timing\").")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def master(ip: str, port: int, http_port: int, advertise_ip: str | None, hostname: str | None,
           agent_ping_interval: float, max_agent_ping_timeouts: int, heartbeat_interval: float,
           allocation_interval: float, offer_timeout: float, work_dir: str | None, agent_reregister_timeout: float,
           agent_removal_rate: Any, agent_gone_timeout: float, recovery_agent_removal_limit: float,
           http_token_file: str | None, http_read_auth: str, tls_cert: str | None, tls_key: str | None,
           allow_host_volumes: bool, acls_path: str | None, framework_rate_limit: str, framework_rate_burst: float | None,
           keys: str | None, insecure: bool, zmq_heartbeat_interval: float, max_agent_pings_per_second: float,
           agent_ca: str | None, proxy_allow: Any, zk: str | None, zk_session_timeout: float, log_level: str) -> None:
    """Run a master."""
    from tepui.master.main import run_master
    from tepui.master.options import MasterOptions
    from tepui.master.admission.rate_limits import parse_rate_limit

    try:
        rate_limit = parse_rate_limit(framework_rate_limit, framework_rate_burst)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--framework-rate-limit") from None

    run_master(MasterOptions(
        ip=ip, port=port, http_port=http_port, advertise_ip=advertise_ip, hostname=hostname,
        agent_ping_interval=agent_ping_interval, max_agent_ping_timeouts=max_agent_ping_timeouts,
        heartbeat_interval=heartbeat_interval, allocation_interval=allocation_interval,
        offer_timeout=offer_timeout or None, log_level=log_level, work_dir=work_dir,
        agent_reregister_timeout=agent_reregister_timeout, agent_removal_rate=agent_removal_rate,
        agent_gone_timeout=agent_gone_timeout, recovery_agent_removal_limit=recovery_agent_removal_limit,
        http_token_file=http_token_file, http_read_auth=http_read_auth, tls_cert=tls_cert, tls_key=tls_key,
        allow_host_volumes=allow_host_volumes, acls_path=acls_path, framework_rate_limit=rate_limit,
        keys_dir=keys, insecure=insecure, zmq_heartbeat_interval=zmq_heartbeat_interval,
        max_agent_pings_per_second=max_agent_pings_per_second or None, proxy_allow=proxy_allow,
        agent_ca=agent_ca, zk=zk, zk_session_timeout=zk_session_timeout))


@cli.command()
@click.option("--master", "master_address", default=DEFAULT_MASTER, show_default=True,
              help="Master HOST:PORT, or zk://H1:P1,H2:P2/PATH to follow the serving master of an HA cluster "
              "(default from $TEPUI_MASTER).")
@click.option("--work-dir", default=None, help="Where sandboxes live (default: $TMPDIR/tepui-agent).")
@click.option("--resources", default=None, help="Override detected resources, e.g. 'cpus:4;mem:2048;ports:[31000-32000]'.")
@click.option("--attributes", default=None, help="Attributes for placement, e.g. 'rack:r1;zone:a'.")
@click.option("--hostname", default=None, help="Hostname to report (default: this machine's).")
@click.option("--kill-grace-period", default=5.0, show_default=True, help="Seconds between SIGTERM and SIGKILL.")
@click.option("--master-silence-limit", type=click.FloatRange(0, min_open=True), default=None,
              show_default="5 x the master's announced ping interval, 10 s with its defaults",
              help="Seconds without a message from the master before re-registering.")
@click.option("--update-retry", default=10.0, show_default=True, help="First retry interval for unacknowledged status updates.")
@click.option("--isolation", default="auto", show_default=True, type=click.Choice(["auto", "cgroups", "none"]),
              help="Per-task cgroups (cpu, memory, pids): auto uses them when possible.")
@click.option("--task-user", default=None, help="Run tasks as this user (default: nobody when the agent is root).")
@click.option("--allowed-users", default="", help="Comma-separated users a task may ask for in command.user.")
@click.option("--task-pids-max", default=4096, show_default=True, help="Processes per task (cgroup pids limit; 0: none).")
@click.option("--containerizers", default="mesos,docker", show_default=True,
              help="Which containerizers to offer: mesos (processes) and/or docker.")
@click.option("--docker-host", default=None, help="Docker engine address (default: $DOCKER_HOST or the local socket).")
@click.option("--fetcher-cache-size", default=2048, show_default=True, help="Fetcher cache size, MiB (per task user).")
@click.option("--fetcher-allowed-dir", "fetcher_allowed_dirs", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, exists=True),
              help="A directory tasks may fetch local files (file:// URIs, absolute paths) from; repeatable. "
              "Default: none, so no local file at all. Tasks still read only what their user may.")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None,
              show_default="5051, or a free port if 5051 is taken", help="HTTP port (sandbox files API); 0: any free port.")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address the HTTP API binds (0.0.0.0: all).")
@click.option("--advertise-ip", default=None, help="Address the master gives clients for this agent's HTTP API "
              "(default: --ip, or 127.0.0.1).")
@click.option("--sandbox-gc-delay", type=click.FloatRange(0, min_open=True), default=604800.0, show_default=True,
              help="Seconds a finished task's sandbox is kept before it is deleted (Mesos --gc_delay).")
@click.option("--strict/--no-strict", default=True, show_default=True,
              help="On restart, refuse a damaged checkpoint (naming the file); --no-strict discards the damaged "
              "part and recovers the rest (Mesos --strict).")
@click.option("--reconfiguration-policy", type=click.Choice(["equal", "additive"]), default="equal", show_default=True,
              help="On restart, whether resources and attributes may differ from the checkpoint: equal (not at all) "
              "or additive (they may grow) (Mesos --reconfiguration_policy).")
@click.option("--http-token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the cluster's HTTP bearer token (the master's --http-token-file): the files API "
              "serves only callers that send it (the master's proxy does). Without it the files API refuses "
              "every read. `tepui up` gives it.")
@click.option("--http-read-auth", type=click.Choice(["open", "token"]), default=None,
              show_default="token; open with --insecure",
              help="Whether the files API (/files/*, /usage) needs the token; /health is always open.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="PEM certificate: serve the files API over TLS only (with --tls-key); the master then calls "
              "it with https:// and verifies it against its --agent-ca.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, help="PEM private key for --tls-cert.")
@click.option("--keys", type=click.Path(file_okay=False), default=None,
              help="Client key directory from `tepui certs issue --agent NAME --out DIR`: the agent's CURVE key pair "
              "(client.key_secret) and the master's public key (master.key). Required unless --insecure.")
@click.option("--insecure", is_flag=True,
              help="No CurveZMQ to the master (which must run with --insecure too). For tests only.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def agent(master_address: str, work_dir: str | None, resources: str | None, attributes: str | None,
          hostname: str | None, kill_grace_period: float, master_silence_limit: float | None, update_retry: float,
          isolation: str, task_user: str | None, allowed_users: str, task_pids_max: int, containerizers: str,
          docker_host: str | None, fetcher_cache_size: int, fetcher_allowed_dirs: tuple[str, ...],
          http_port: int | None, ip: str,
          advertise_ip: str | None, sandbox_gc_delay: float, strict: bool, reconfiguration_policy: str,
          http_token_file: str | None, http_read_auth: str | None, tls_cert: str | None, tls_key: str | None,
          keys: str | None, insecure: bool, log_level: str) -> None:
    """Run an agent that offers this machine's resources to a master."""
    from tepui.agent.main import run_agent
    from tepui.agent.options import AgentOptions
    from tepui.agent.probe import parse_attributes
    from tepui.agent.shell import default_work_dir
    from tepui.sdk.resources import InvalidResources, Resources
    from tepui.sdk.transport import tcp_address
    from tepui.sdk.zookeeper import is_zk, parse_zk_url

    unknown = {c.strip() for c in containerizers.split(",") if c.strip()} - {"mesos", "docker"}
    if unknown:
        raise click.BadParameter(f"unknown containerizer {sorted(unknown)[0]!r}: use mesos and/or docker",
                                 param_hint="--containerizers")
    try:
        if is_zk(master_address):
            parse_zk_url(master_address)  # followed: the agent registers with the serving leader
        else:
            tcp_address(master_address, 5050)
        if resources:
            Resources.parse(resources)
        parse_attributes(attributes)
    except (ValueError, InvalidResources) as exc:
        raise click.BadParameter(str(exc)) from None
    import ipaddress

    for flag, value in (("--ip", ip), ("--advertise-ip", advertise_ip)):
        if value is None:
            continue
        try:
            parsed = ipaddress.ip_address(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=flag) from None
        if flag == "--advertise-ip" and parsed.is_unspecified:
            raise click.BadParameter(f"{value} is not an address others can reach", param_hint=flag)
    run_agent(AgentOptions(
        master=master_address, work_dir=work_dir or default_work_dir(), resources=resources, attributes=attributes,
        hostname=hostname, kill_grace_period=kill_grace_period, master_silence_limit=master_silence_limit,
        update_retry_initial=update_retry, log_level=log_level, isolation=isolation, task_user=task_user,
        allowed_users=tuple(u.strip() for u in allowed_users.split(",") if u.strip()),
        pids_limit=task_pids_max or None,
        containerizers=tuple(c.strip() for c in containerizers.split(",") if c.strip()),
        docker_host=docker_host, fetcher_cache_mib=fetcher_cache_size, http_port=http_port, ip=ip,
        advertise_ip=advertise_ip, sandbox_gc_delay=sandbox_gc_delay, strict=strict,
        reconfiguration_policy=reconfiguration_policy, http_token_file=http_token_file,
        http_read_auth=http_read_auth, fetcher_allowed_dirs=fetcher_allowed_dirs, keys_dir=keys,
        insecure=insecure, tls_cert=tls_cert, tls_key=tls_key))


cli.add_command(up_command)
cli.add_command(certs_command)
cli.add_command(state_command)
cli.add_command(run_command)
cli.add_command(logs_command)
cli.add_command(apps_command)
cli.add_command(jobs_command)
cli.add_command(services_command)
cli.add_command(batch_command)
cli.add_command(cron_command)
cli.add_command(sim_command)


def main() -> None:
    cli(prog_name="tepui")


if __name__ == "__main__":
    main()
