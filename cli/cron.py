"""``tepui cron``: the cron framework (schedules whose fires become batch jobs; docs/cron.md).

``tepui cron serve`` runs the framework's process; the other subcommands are its users' client
(``create``, ``apply``, ``list``, ``show``, ``next``, ``suspend``, ``resume``, ``trigger``,
``history``, ``rm``) and talk to its REST API through the master's proxy.
"""

from __future__ import annotations

from typing import Any

import click

from tepui.cli.framework_process import common, process_options, start


@click.group("cron")
def cron_command() -> None:
    """Schedules that submit batch jobs, each fire exactly once, in any time zone (docs/cron.md)."""


@cron_command.command("serve")
@process_options("cron", 5092, "SQLite file holding schedules and fire records (default: "
                 "$XDG_STATE_HOME/tepui/cron.sqlite). Keep it: it is the write-ahead log that makes each fire "
                 "run once.", role_help="Role to subscribe in (it launches no task).",
                 token_help="The cluster's HTTP token: mutating API calls must carry it, and the batch calls "
                 "send it.", task_user=False)
@click.option("--batch", "batch_url", default=None, metavar="URL",
              help="The batch framework's API base (default: http://<master http>/frameworks/batch/v1, through "
              "the master's proxy, with the --http-token-file token as Bearer).")
def serve_command(batch_url: str | None, log_level: str, **flags: Any) -> None:
    """Run the cron framework: it fires schedules by submitting batch jobs (`tepui cron ...`)."""

    def run(reactor: Any) -> int:  # imported once the reactor is installed
        from tepui.frameworks.cron.main import CronOptions, run

        return run(CronOptions(**common(flags), batch_url=batch_url), reactor)

    start("cron", log_level, run)


# The user commands (create, apply, list, show, next, ...) live in cli/cron_commands.py.
from tepui.cli.cron_commands import USER_COMMANDS  # noqa: E402  # after the group they join

for _user_command in USER_COMMANDS:
    cron_command.add_command(_user_command)
