"""``tepui batch``: run the batch framework (arrays, DAGs of stages, retries, gangs; docs/batch.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from tepui.sdk.http_modes import READ_AUTH_MODES

if TYPE_CHECKING:
    from tepui.frameworks.batch.queue_values import QueuesConfig


def _queues(path: str | None) -> QueuesConfig | None:
    """The queues file (YAML: ``queues: [{name, priority, max_running}]``, ``weights: {user: w}``)."""
    if path is None:
        return None
    import yaml

    from tepui.frameworks.batch.queue_values import QueueConfigError, QueuesConfig

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        return QueuesConfig.from_dict(data)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--queues") from None
    except (yaml.YAMLError, QueueConfigError) as exc:
        raise click.BadParameter(f"{path}: {exc} (see docs/batch.md, 'Queues and fairness')",
                                 param_hint="--queues") from None


@click.command("batch")
@click.option("--master", default=None, help="Master HOST:PORT (default: the client configuration `tepui up` writes).")
@click.option("--store", default=None,
              help="SQLite file holding jobs, attempts and history (default: $XDG_STATE_HOME/tepui/batch.sqlite). "
              "Keep it: a restart resumes every job from it.")
@click.option("--queues", "queues_file", default=None, metavar="FILE",
              help="YAML queues and fair-share weights (default: one queue, 'default', equal weights).")
@click.option("--http-ip", default="127.0.0.1", show_default=True, help="Address the REST API binds.")
@click.option("--http-port", default=5091, show_default=True, help="Port of the REST API (the master proxies "
              "/frameworks/batch/ to it).")
@click.option("--advertise-ip", default=None, help="Address the master reaches the API at (default: --http-ip).")
@click.option("--master-http", default=None, metavar="URL",
              help="The master's HTTP URL downstream tasks fetch upstream outputs from (default: from the "
              "master's subscription answer).")
@click.option("--name", default="batch", show_default=True, help="Framework name (the master's proxy path).")
@click.option("--role", default="*", show_default=True, help="Role to subscribe in.")
@click.option("--principal", default=None, help="Principal (with CURVE keys the key decides it).")
@click.option("--user", default=None, help="User tasks run as (default: yours; the agent may override).")
@click.option("--http-token-file", default=None,
              help="The cluster's HTTP token: mutating API calls must carry it (the master's proxy does).")
@click.option("--http-read-auth", type=click.Choice(READ_AUTH_MODES), default="open", show_default=True)
@click.option("--insecure", is_flag=True, help="Plain-text ZeroMQ to a master started with --insecure.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def batch_command(master: str | None, store: str | None, queues_file: str | None, http_ip: str, http_port: int,
                  advertise_ip: str | None, master_http: str | None, name: str, role: str, principal: str | None,
                  user: str | None, http_token_file: str | None, http_read_auth: str, insecure: bool,
                  log_level: str) -> None:
    """Run the batch framework: jobs of task arrays and stages, queued fairly (`tepui jobs ...`)."""
    queues = _queues(queues_file)
    from tepui.sdk import install_reactor
    from tepui.sdk.shell import configure_logging

    configure_logging(log_level, "batch")
    reactor = install_reactor()
    from tepui.frameworks.batch.main import BatchOptions, run

    options = BatchOptions(master=master, store=store or "", http_ip=http_ip, http_port=http_port,
                           advertise_ip=advertise_ip, name=name, role=role, principal=principal, user=user,
                           token_file=http_token_file, read_auth=http_read_auth, insecure=insecure,
                           queues=queues, master_http=master_http)
    sys.exit(run(options, reactor))
