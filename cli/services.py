"""``tepui services``: run the services framework (long-running apps; docs/services.md)."""

from __future__ import annotations

from typing import Any

import click

from tepui.cli.framework_process import common, process_options, start


@click.command("services")
@process_options("services", 5090, "SQLite file holding apps, versions, instances and deployments "
                 "(default: $XDG_STATE_HOME/tepui/services.sqlite). Keep it: a restart resumes from it.")
def services_command(log_level: str, **flags: Any) -> None:
    """Run the services framework: apps that keep running, with rolling deploys and health checks."""

    def run(reactor: Any) -> int:  # imported once the reactor is installed
        from tepui.frameworks.services.main import ServicesOptions, run

        return run(ServicesOptions(**common(flags)), reactor)

    start("services", log_level, run)
