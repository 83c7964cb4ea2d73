"""The command line of a framework's process (``tepui services``, ``tepui batch``, ``tepui cron
serve``): the flags every one takes — they fill :class:`tepui.sdk.framework_shell.FrameworkOptions`
— and how the process starts. Each command adds its own flags and builds its own options.

Why one place: the three commands repeated the same dozen ``click.option`` lines, which drifted
only in their help texts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from tepui.sdk.http_modes import READ_AUTH_MODES
from tepui.sdk.zookeeper import DEFAULT_SESSION_TIMEOUT, parse_zk_url

F = TypeVar("F", bound=Callable[..., Any])

TOKEN_HELP = "The cluster's HTTP token: mutating API calls must carry it (the master's proxy does)."


def process_options(name: str, port: int, store_help: str, *, role_help: str = "Role to subscribe in.",
                    token_help: str = TOKEN_HELP, task_user: bool = True) -> Callable[[F], F]:
    """The common flags of framework ``name`` whose API listens on ``port`` by default;
    ``task_user``: it launches tasks, so ``--user`` says as whom."""
    options = [
        click.option("--master", default=None,
                     help="Master HOST:PORT, or zk://HOST:PORT[,...]/PATH to follow the leading master "
                          "(default: the client configuration `tepui up` writes)."),
        click.option("--store", default=None, help=store_help + " Not with --zk."),
        click.option("--zk", default=None, metavar="zk://HOST:PORT[,...]/PATH",
                     help=f"Run as one of several instances of the {name} framework: the leader is elected in "
                          f"ZooKeeper under PATH/frameworks/{name}/leader and keeps the store there "
                          "(PATH/frameworks/NAME/store); the others redirect API calls to it (307) and take over "
                          "when it is lost. Instances on one host differ by --http-port."),
        click.option("--zk-session-timeout", type=float, default=DEFAULT_SESSION_TIMEOUT, show_default=True,
                     help="ZooKeeper session timeout in seconds: how soon a lost leader is replaced "
                          "(docs/operations.md, \"Failover timing\")."),
        click.option("--http-ip", default="127.0.0.1", show_default=True, help="Address the REST API binds."),
        click.option("--http-port", default=port, show_default=True,
                     help=f"Port of the REST API (the master proxies /frameworks/{name}/ to it)."),
        click.option("--advertise-ip", default=None, help="Address the master reaches the API at (default: --http-ip)."),
        click.option("--name", default=name, show_default=True, help="Framework name (the master's proxy path)."),
        click.option("--role", default="*", show_default=True, help=role_help),
        click.option("--principal", default=None, help="Principal (with CURVE keys the key decides it)."),
        *([click.option("--user", default=None, help="User tasks run as (default: yours; the agent may override).")]
          if task_user else []),
        click.option("--http-token-file", default=None, help=token_help),
        click.option("--http-read-auth", type=click.Choice(READ_AUTH_MODES), default="open", show_default=True),
        click.option("--insecure", is_flag=True, help="Plain-text ZeroMQ to a master started with --insecure."),
        click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])),
    ]

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def common(flags: dict[str, Any]) -> dict[str, Any]:
    """The FrameworkOptions fields from the common flags (``log_level`` is taken out: it is not
    an option of the framework but of its logging)."""
    flags = dict(flags)
    flags.pop("log_level", None)
    if flags.get("zk"):
        if flags.get("store"):
            raise click.UsageError("--store and --zk exclude each other: with --zk the framework's store is in "
                                   "ZooKeeper, shared by its instances")
        try:
            parse_zk_url(flags["zk"])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--zk") from None
    if flags.get("zk_session_timeout", 1.0) <= 0:
        raise click.BadParameter("must be > 0 seconds", param_hint="--zk-session-timeout")
    flags["store"] = flags.get("store") or ""
    flags["token_file"] = flags.pop("http_token_file")
    flags["read_auth"] = flags.pop("http_read_auth")
    return flags


def start(name: str, log_level: str, run: Callable[[Any], int]) -> NoReturn:
    """Configures logging, installs the reactor, and exits with what ``run(reactor)`` returns;
    ``run`` imports the framework's modules itself, after the reactor is installed."""
    from tepui.sdk import install_reactor
    from tepui.sdk.shell import configure_logging

    configure_logging(log_level, name)
    reactor = install_reactor()
    sys.exit(run(reactor))
