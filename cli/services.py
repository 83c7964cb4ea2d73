"""``tepui services``: run the services framework (long-running apps; docs/services.md)."""

from __future__ import annotations

import sys

import click

from tepui.sdk.http_modes import READ_AUTH_MODES


@click.command("services")
@click.option("--master", default=None, help="Master HOST:PORT (default: the client configuration `tepui up` writes).")
@click.option("--store", default=None,
              help="SQLite file holding apps, versions, instances and deployments "
              "(default: $XDG_STATE_HOME/tepui/services.sqlite). Keep it: a restart resumes from it.")
@click.option("--http-ip", default="127.0.0.1", show_default=True, help="Address the REST API binds.")
@click.option("--http-port", default=5090, show_default=True, help="Port of the REST API (the master proxies "
              "/frameworks/services/ to it).")
@click.option("--advertise-ip", default=None, help="Address the master reaches the API at (default: --http-ip).")
@click.option("--name", default="services", show_default=True, help="Framework name (the master's proxy path).")
@click.option("--role", default="*", show_default=True, help="Role to subscribe in.")
@click.option("--principal", default=None, help="Principal (with CURVE keys the key decides it).")
@click.option("--user", default=None, help="User tasks run as (default: yours; the agent may override).")
@click.option("--http-token-file", default=None,
              help="The cluster's HTTP token: mutating API calls must carry it (the master's proxy does).")
@click.option("--http-read-auth", type=click.Choice(READ_AUTH_MODES), default="open", show_default=True)
@click.option("--insecure", is_flag=True, help="Plain-text ZeroMQ to a master started with --insecure.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def services_command(master: str | None, store: str | None, http_ip: str, http_port: int, advertise_ip: str | None,
                     name: str, role: str, principal: str | None, user: str | None, http_token_file: str | None,
                     http_read_auth: str, insecure: bool, log_level: str) -> None:
    """Run the services framework: apps that keep running, with rolling deploys and health checks."""
    from tepui.sdk import install_reactor
    from tepui.sdk.shell import configure_logging

    configure_logging(log_level, "services")
    reactor = install_reactor()
    from tepui.frameworks.services.main import ServicesOptions, run

    options = ServicesOptions(master=master, store=store or "", http_ip=http_ip, http_port=http_port,
                              advertise_ip=advertise_ip, name=name, role=role, principal=principal, user=user,
                              token_file=http_token_file, read_auth=http_read_auth, insecure=insecure)
    sys.exit(run(options, reactor))
