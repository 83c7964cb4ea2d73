"""``tepui cron``: the cron framework (schedules whose fires become batch jobs; docs/cron.md).

``tepui cron serve`` runs the framework's process; the other subcommands are its users' client
(``create``, ``apply``, ``list``, ``show``, ``next``, ``suspend``, ``resume``, ``trigger``,
``history``, ``rm``) and talk to its REST API through the master's proxy.
"""

from __future__ import annotations

import sys

import click

from tepui.sdk.http_modes import READ_AUTH_MODES


@click.group("cron")
def cron_command() -> None:
    """Schedules that submit batch jobs, each fire exactly once, in any time zone (docs/cron.md)."""


@cron_command.command("serve")
@click.option("--master", default=None, help="Master HOST:PORT (default: the client configuration `tepui up` writes).")
@click.option("--store", default=None,
              help="SQLite file holding schedules and fire records (default: $XDG_STATE_HOME/tepui/cron.sqlite). "
              "Keep it: it is the write-ahead log that makes each fire run once.")
@click.option("--batch", "batch_url", default=None, metavar="URL",
              help="The batch framework's API base (default: http://<master http>/frameworks/batch/v1, through "
              "the master's proxy, with the --http-token-file token as Bearer).")
@click.option("--http-ip", default="127.0.0.1", show_default=True, help="Address the REST API binds.")
@click.option("--http-port", default=5092, show_default=True, help="Port of the REST API (the master proxies "
              "/frameworks/cron/ to it).")
@click.option("--advertise-ip", default=None, help="Address the master reaches the API at (default: --http-ip).")
@click.option("--name", default="cron", show_default=True, help="Framework name (the master's proxy path).")
@click.option("--role", default="*", show_default=True, help="Role to subscribe in (it launches no task).")
@click.option("--principal", default=None, help="Principal (with CURVE keys the key decides it).")
@click.option("--http-token-file", default=None,
              help="The cluster's HTTP token: mutating API calls must carry it, and the batch calls send it.")
@click.option("--http-read-auth", type=click.Choice(READ_AUTH_MODES), default="open", show_default=True)
@click.option("--insecure", is_flag=True, help="Plain-text ZeroMQ to a master started with --insecure.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def serve_command(master: str | None, store: str | None, batch_url: str | None, http_ip: str, http_port: int,
                  advertise_ip: str | None, name: str, role: str, principal: str | None,
                  http_token_file: str | None, http_read_auth: str, insecure: bool, log_level: str) -> None:
    """Run the cron framework: it fires schedules by submitting batch jobs (`tepui cron ...`)."""
    from tepui.sdk import install_reactor
    from tepui.sdk.shell import configure_logging

    configure_logging(log_level, "cron")
    reactor = install_reactor()
    from tepui.frameworks.cron.main import CronOptions, run

    options = CronOptions(master=master, store=store or "", http_ip=http_ip, http_port=http_port,
                          advertise_ip=advertise_ip, name=name, role=role, principal=principal,
                          token_file=http_token_file, read_auth=http_read_auth, insecure=insecure,
                          batch_url=batch_url)
    sys.exit(run(options, reactor))


# The user commands (create, apply, list, show, next, ...) live in cli/cron_commands.py.
from tepui.cli.cron_commands import USER_COMMANDS  # noqa: E402  # after the group they join

for _user_command in USER_COMMANDS:
    cron_command.add_command(_user_command)
