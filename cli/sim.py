"""``tepui sim``: many simulated agents in one process, for scale tests of a real master."""

from __future__ import annotations

import os

import click

from tepui.sim.events import DEFAULT_RESOURCES


@click.command("sim")
@click.option("--master", "master_address", default=lambda: os.environ.get("TEPUI_MASTER", "127.0.0.1:5050"),
              show_default="$TEPUI_MASTER or 127.0.0.1:5050",
              help="Master HOST:PORT, or zk://H1:P1,H2:P2/PATH to follow the serving master of an HA cluster.")
@click.option("--agents", type=click.IntRange(1), default=100, show_default=True, help="How many agents to simulate.")
@click.option("--resources", default=DEFAULT_RESOURCES, show_default=True, help="What each agent offers.")
@click.option("--attributes", default="", help="Each agent's attributes; {i}, {i%N} and {i//N} are replaced by the "
              "agent's number (1-based, as in its hostname), e.g. 'rack:r{i%10};zone:z{i%3}'.")
@click.option("--hostname-prefix", default="sim-", show_default=True,
              help="Agents are called PREFIX00001, PREFIX00002, ...")
@click.option("--wave", type=click.IntRange(1), default=250, show_default=True,
              help="Agents that connect and register at a time; the next wave starts once they are registered.")
@click.option("--transport", type=click.Choice(["auto", "zmq", "zmtp"]), default="auto", show_default=True,
              help="zmq: a libzmq DEALER per agent (2 file descriptors each); zmtp: the same protocol in Python "
              "(1 each); auto: zmq when the descriptor limit allows.")
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="Written (atomically) once every agent is registered, besides the `ready agents=N` line.")
@click.option("--unregister/--no-unregister", default=False, show_default=True,
              help="On SIGTERM/SIGINT, unregister every agent (otherwise the master finds them silent after its "
              "ping timeout, as it finds dead agents).")
@click.option("--stats-interval", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Seconds between stats lines on stderr once ready (0: none).")
@click.option("--update-retry", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="First retry interval for unacknowledged status updates (doubling, up to 10 min).")
@click.option("--keys", type=click.Path(file_okay=False), default=None,
              help="An agent key directory, as `tepui agent --keys` takes (`tepui certs issue --agent NAME --out DIR`; "
              "`tepui up` has one per agent in STATE_DIR/keys/issued/agent-N): every simulated agent uses it over "
              "CURVE, each registering its own agent id under the key's principal. Required unless --insecure.")
@click.option("--insecure", is_flag=True,
              help="Plain-text ZeroMQ to a master started with --insecure.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def sim_command(master_address: str, agents: int, resources: str, attributes: str, hostname_prefix: str, wave: int,
                transport: str, ready_file: str | None, unregister: bool, stats_interval: float, update_retry: float,
                keys: str | None, insecure: bool, log_level: str) -> None:
    """Simulate --agents agents against a real master: each has its own connection, hostname,
    resources and attributes, answers pings, and "runs" tasks without processes: TASK_RUNNING
    at once, TASK_FINISHED after the task's label tepui.sim/duration (seconds), else the N of a
    `sleep N` command, else at once. Prints `ready agents=N` on stdout once all registered."""
    from tepui.sdk.resources import InvalidResources, Resources
    from tepui.sdk.transport import tcp_address
    from tepui.sdk.zookeeper import is_zk, parse_zk_url
    from tepui.sim.events import check_template
    from tepui.sim.main import SimOptions, run_sim

    from tepui.agent.main import agent_curve

    try:
        curve = agent_curve(keys, insecure)
    except SystemExit as exc:
        raise click.UsageError(str(exc)) from None
    if curve is not None and transport == "zmtp":
        from tepui.sim.curve import CurveError, sodium

        try:
            sodium()
        except CurveError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        if is_zk(master_address):
            parse_zk_url(master_address)  # the agents follow the serving master
        else:
            tcp_address(master_address, 5050)
        Resources.parse(resources)
        check_template(attributes)
    except (ValueError, InvalidResources) as exc:
        raise click.BadParameter(str(exc)) from None
    run_sim(SimOptions(master=master_address, agents=agents, resources=resources, attributes=attributes,
                       hostname_prefix=hostname_prefix, wave=wave, transport=transport, ready_file=ready_file,
                       unregister=unregister, stats_interval=stats_interval, update_retry=update_retry,
                       log_level=log_level, keys=curve))
