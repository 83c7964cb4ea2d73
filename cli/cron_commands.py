"""``tepui cron``'s user commands: create, apply, list, show, next, suspend, resume, trigger,
history, rm (the cron framework's REST API, docs/cron.md "CLI and API"). ``cli/cron.py`` holds
the group and ``serve``, and adds these to it.

A thin shell over :class:`tepui.frameworks.cron.client.CronClient`, which finds the master, its
token and its CA as every ``tepui`` command does and turns every failure into a sentence saying
what to do. Exit codes as ``tepui jobs``: 0 done, 1 the API refused (an invalid spec, an
unknown schedule...), 4 it cannot be reached (no master, or no cron framework behind it), so a
script tells a wrong schedule from a dead cluster.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tepui.cli import cron_render as render
from tepui.cli.api_commands import api_errors, http_option, json_option, print_json
from tepui.frameworks.cron.client import CronClient, Spec
from tepui.frameworks.cron.client_values import CronError, Schedule

__all__ = ["USER_COMMANDS"]

#: The clock ``list``/``show`` measure "in 5h 2m" from (a test sets it).
now: Callable[[], float] = time.time
_api_errors = api_errors(CronError)


def _id_command(name: str, with_json: bool = False) -> Callable[[Callable[..., Any]], click.Command]:
    """A command on one schedule (``tepui cron NAME ID [--json] [--http]``), its CronError its exit."""

    def decorate(function: Callable[..., Any]) -> click.Command:
        function = http_option(_api_errors(function))
        return click.command(name)(click.argument("schedule_id", metavar="ID")(
            json_option(function) if with_json else function))
    return decorate


def _spec(file: str) -> Spec:
    if file != "-":
        return Path(file)
    text = sys.stdin.read()
    if not text.strip():
        raise CronError("stdin is empty.", reason="INVALID_SPEC", hint="Pipe a schedule spec in, or pass a FILE.")
    return text


def _next_line(schedule: Schedule) -> str:
    if schedule.suspended:
        return f"suspended: no fires until `tepui cron resume {schedule.id}`"
    if schedule.next_fire_at is None:
        return "no fire left"
    return (f"next fire {render.local(schedule.next_fire_at, schedule.time_zone)} "
            f"({render.utc(schedule.next_fire_at)}, {render.relative(schedule.next_fire_at, now())})")


# --- writing ------------------------------------------------------------------------------------

_FILE = click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))


@click.command("create")
@_FILE
@http_option
@_api_errors
def create_command(file: str, http: str) -> None:
    """Create a schedule from a YAML or JSON spec (FILE, or - for stdin; docs/cron.md 'Schedule spec').
    Refused when its id exists: `apply` replaces."""
    schedule = CronClient(http).create(_spec(file))
    click.echo(f"schedule {schedule.id} created: {schedule.rule} in {schedule.time_zone}; {_next_line(schedule)}")
    click.echo(f"`tepui cron next {schedule.id}` lists the coming fires, `tepui cron history {schedule.id}` the past ones.")


@click.command("apply")
@_FILE
@http_option
@_api_errors
def apply_command(file: str, http: str) -> None:
    """Create the schedule, or replace the spec of the one with its id. Fires due before the change
    are decided under the old spec; the new one applies from now on."""
    schedule = CronClient(http).apply(_spec(file))
    verb = "created" if schedule.data.get("created") else "updated"
    click.echo(f"schedule {schedule.id} {verb}: {schedule.rule} in {schedule.time_zone}; {_next_line(schedule)}")


@_id_command("suspend")
def suspend_command(schedule_id: str, http: str) -> None:
    """Stop a schedule's fires (running jobs go on) until `resume`."""
    schedule = CronClient(http).suspend(schedule_id)
    running = f"; still running: {', '.join(schedule.running)}" if schedule.running else ""
    click.echo(f"schedule {schedule.id} suspended: no fires until `tepui cron resume {schedule.id}`{running}")


@_id_command("resume")
def resume_command(schedule_id: str, http: str) -> None:
    """Fire again. The fires that fell in the suspension are one MISSED record, never a burst."""
    schedule = CronClient(http).resume(schedule_id)
    click.echo(f"schedule {schedule.id} resumed; {_next_line(schedule)}")


@_id_command("trigger")
def trigger_command(schedule_id: str, http: str) -> None:
    """Run the schedule's job now, outside the schedule (job id ID_manual_<unix>)."""
    fire = CronClient(http).trigger(schedule_id)
    click.echo(f"triggered {schedule_id}: job {fire.key} ({fire.state.lower()}); follow it with "
               f"`tepui jobs wait {fire.key}`")


@_id_command("rm")
def rm_command(schedule_id: str, http: str) -> None:
    """Forget a schedule and its fire records. Jobs it submitted that still run go on."""
    running = CronClient(http).rm(schedule_id)
    click.echo(f"schedule {schedule_id} removed")
    if running:
        click.echo(f"still running in the batch framework: {', '.join(running)} (`tepui jobs cancel JOB` stops one)")


# --- reading ------------------------------------------------------------------------------------

@click.command("list")
@json_option
@http_option
@_api_errors
def list_command(as_json: bool, http: str) -> None:
    """List the schedules: each one's last run, its result, and the next fire."""
    schedules = CronClient(http).list()
    if as_json:
        print_json({"schedules": [dict(s.data) for s in schedules]})
    elif not schedules:
        click.echo("no schedules yet; create one with `tepui cron create FILE` (examples/cron/)")
    else:
        render.render_schedules(schedules, render.console(), now())


@_id_command("show", with_json=True)
def show_command(schedule_id: str, as_json: bool, http: str) -> None:
    """Show a schedule: its settings, last run, next fire and newest fires."""
    client = CronClient(http)
    schedule = client.get(schedule_id)
    fires = client.fires(schedule_id)
    if as_json:
        print_json({"schedule": dict(schedule.data), "fires": [dict(f.data) for f in fires]})
    else:
        render.render_schedule(schedule, fires, render.console(), now())


@_id_command("next", with_json=True)
@click.option("-n", "count", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many fires.")
def next_command(schedule_id: str, count: int, as_json: bool, http: str) -> None:
    """The next fire times, in the schedule's zone and in UTC (a DST change between two is marked)."""
    client = CronClient(http)
    fires = client.next(schedule_id, count)
    if as_json:
        print_json({"next": [{"at": f.at, "utc": f.utc, "local": f.local, "key": f.key} for f in fires]})
        return
    if not fires:
        click.echo(f"schedule {schedule_id} has no fire left")
        return
    render.render_next(fires, client.get(schedule_id).time_zone, render.console())


@_id_command("history", with_json=True)
def history_command(schedule_id: str, as_json: bool, http: str) -> None:
    """The fires kept (newest first): when each was scheduled, what became of it, and why."""
    client = CronClient(http)
    fires = client.fires(schedule_id)
    if as_json:
        print_json({"fires": [dict(f.data) for f in fires]})
    elif not fires:
        click.echo(f"schedule {schedule_id} has not fired yet; `tepui cron next {schedule_id}` says when it will")
    else:
        render.render_fires(fires, client.get(schedule_id).time_zone, render.console())
        click.echo(f"the jobs themselves: `tepui jobs show KEY`, `tepui jobs logs KEY`")


USER_COMMANDS = [create_command, apply_command, list_command, show_command, next_command, suspend_command,
                 resume_command, trigger_command, history_command, rm_command]
