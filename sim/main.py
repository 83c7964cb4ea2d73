"""``tepui sim``: N simulated agents registered with a real master (with one agent key, over
CURVE, or plain text to an ``--insecure`` one).

The process prints progress on stderr while agents register, then exactly one line
``ready agents=N`` on stdout (and writes ``--ready-file``, atomically) once all of them are
registered. With ``--master zk://...`` it follows the serving master: the agents connect once
one serves, and move and re-register at once when another takes over (a ``reregistered ...``
line on stdout says when they all have; see sim/shell.py). SIGTERM or SIGINT stops it: with ``--unregister`` every agent first says
UNREGISTER_AGENT, otherwise the master finds them silent after its ping timeout, as it would
find real agents that died.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tepui.sdk.codec import DEFAULT_MAX_BYTES
from tepui.sdk.runtime import event_loop, install_reactor
from tepui.sdk.shell import configure_logging
from tepui.sdk.transport import tcp_address
from tepui.sdk.zookeeper import is_zk

if TYPE_CHECKING:
    from tepui.sdk.keys import ClientKeys

log = logging.getLogger("tepui.sim")

UNREGISTER_FLUSH_SECONDS = 1.0  # time given to queued UNREGISTER_AGENTs before the sockets close


@dataclass(frozen=True)
class SimOptions:
    master: str
    agents: int
    resources: str
    attributes: str = ""
    hostname_prefix: str = "sim-"
    wave: int = 250
    transport: str = "auto"
    ready_file: str | None = None
    unregister: bool = False
    stats_interval: float = 10.0
    update_retry: float = 10.0
    log_level: str = "warning"
    keys: ClientKeys | None = None  # one agent key for every simulated agent; None: plain text


def run_sim(options: SimOptions) -> None:
    configure_logging(options.log_level, "sim")
    from tepui.sdk.resources import Resources
    from tepui.sim.core import SimCore
    from tepui.sim.events import SimConfig
    from tepui.sim.links import choose_transport, make_links, raise_fd_limit
    from tepui.sim.shell import SimShell

    following = is_zk(options.master)
    address = options.master if following else tcp_address(options.master, 5050)
    fd_limit = raise_fd_limit()
    try:
        transport = choose_transport(options.transport, options.agents, fd_limit)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    config = SimConfig(agents=options.agents, resources=Resources.parse(options.resources),
                       attributes=options.attributes, hostname_prefix=options.hostname_prefix,
                       update_retry_initial=options.update_retry)
    reactor = install_reactor()
    loop = event_loop(reactor)
    # Status update ids: 16 random bytes, as a v4 UUID's but without building a UUID object
    # (uuid4() was a fifth of the simulator's time under launch load).
    core = SimCore(config, functools.partial(os.urandom, 16))

    def ready() -> None:
        print(f"ready agents={options.agents}", flush=True)
        if options.ready_file:
            temporary = f"{options.ready_file}.tmp"
            with open(temporary, "w") as handle:
                handle.write(f"agents={options.agents}\n")
            os.replace(temporary, options.ready_file)
        # The agents' own structures live as long as the process: keep the collector off them.
        gc.collect()
        gc.freeze()

    shell: SimShell | None = None

    def new_shell(connect: str, keys: ClientKeys | None) -> SimShell:
        def links(on_message: Any) -> Any:
            return make_links(transport, loop, connect, shell_identity, on_message, DEFAULT_MAX_BYTES,
                              options.agents, keys)

        return SimShell(reactor, core, links, wave=options.wave, stats_interval=options.stats_interval,
                        on_ready=ready)

    def shell_identity(index: int) -> bytes:
        assert shell is not None
        return shell.identity(index)

    follower: Any = None
    if following:
        from tepui.sdk.master_follower import MasterTarget, follow_master
        from tepui.sdk.zookeeper import ZkUnavailable

        def on_target(target: MasterTarget) -> None:
            """The first serving master: the agents start; every later one: they move to it."""
            nonlocal shell
            if shell is None:
                keys = options.keys
                if keys is not None and target.server_key is not None and target.server_key != keys.server:
                    keys = replace(keys, server=target.server_key)
                shell = new_shell(target.connect, keys)
                print(f"sim: master {target.info.id} (epoch {target.info.epoch}) at {target.connect} leads",
                      file=sys.stderr, flush=True)
                shell.start()
            else:
                shell.master_changed(target.info.id, target.info.epoch, target.connect, target.server_key)

        try:
            follower = follow_master(reactor, options.master, options.keys, on_target)
        except ZkUnavailable as exc:
            raise SystemExit(f"--master {options.master}: {exc}") from None
    else:
        shell = new_shell(address, options.keys)

    def on_shutdown() -> Any:
        """SIGTERM, SIGINT: stop the agents, give UNREGISTER_AGENTs a moment, close."""
        from twisted.internet import defer, task

        if follower is not None:
            follower.close()
        if shell is None:
            return None  # no master ever served: nothing to stop
        shell.stop(options.unregister)
        delay = UNREGISTER_FLUSH_SECONDS if options.unregister else 0.0
        done: defer.Deferred[None] = task.deferLater(reactor, delay, shell.close)
        return done

    reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)
    if shell is not None:
        reactor.callWhenRunning(shell.start)
    print(f"sim: {options.agents} agents of {config.resources} for {address} over {transport} "
          f"({'CURVE' if options.keys is not None else 'plain text'}) "
          f"(descriptor limit {fd_limit}), {options.wave} per wave", file=sys.stderr, flush=True)
    reactor.run()
