"""``tepui state``: the master's ``/state`` as aligned tables."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import click
from rich.console import Console
from rich.table import Table

DEFAULT_HTTP = os.environ.get("TEPUI_MASTER_HTTP", "127.0.0.1:5080")


def fetch_state(http: str, timeout: float = 5.0) -> dict[str, Any]:
    url = http if http.startswith("http") else f"http://{http}"
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/state", timeout=timeout) as response:
            return json.load(response)  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(
            f"cannot reach the master's HTTP API at {url}: {reason}. "
            "Is a cluster running? Start one with `tepui up`, or pass --http HOST:PORT."
        ) from None


def _used(used: dict[str, Any], total: dict[str, Any], name: str) -> str:
    return f"{used.get(name, 0):g} / {total.get(name, 0):g}"


def render(state: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]master[/bold] {state['id']} at {state['address']} (epoch {state['epoch']}), "
                  f"{state['activated_slaves']} agents, {len(state['frameworks'])} frameworks, "
                  f"{state['outstanding_offers']} outstanding offers")
    agents = Table(title="Agents", title_justify="left")
    for column, justify in (("ID", "left"), ("HOST", "left"), ("CPUS", "right"), ("MEM MiB", "right"),
                            ("DISK MiB", "right"), ("TASKS", "right"), ("ATTRIBUTES", "left")):
        agents.add_column(column, justify=justify)  # type: ignore[arg-type]
    for agent in state["slaves"]:
        total, used = agent["resources"], agent["used_resources"]
        attributes = ";".join(f"{k}:{v}" for k, v in sorted(agent["attributes"].items()))
        agents.add_row(agent["id"], agent["hostname"], _used(used, total, "cpus"), _used(used, total, "mem"),
                       _used(used, total, "disk"), str(agent["task_count"]), attributes)
    console.print(agents)
    frameworks = Table(title="Frameworks", title_justify="left")
    for column, justify in (("ID", "left"), ("NAME", "left"), ("ROLES", "left"), ("CONNECTED", "left"),
                            ("TASKS", "right"), ("CPUS", "right"), ("MEM MiB", "right")):
        frameworks.add_column(column, justify=justify)  # type: ignore[arg-type]
    tasks = Table(title="Tasks", title_justify="left")
    for column in ("ID", "FRAMEWORK", "AGENT", "STATE", "CPUS", "MEM MiB"):
        tasks.add_column(column, justify="right" if column in ("CPUS", "MEM MiB") else "left")
    for framework in state["frameworks"]:
        used = framework["used_resources"]
        frameworks.add_row(framework["id"], framework["name"], ",".join(framework["roles"]),
                           "yes" if framework["connected"] else "no", str(len(framework["tasks"])),
                           f"{used.get('cpus', 0):g}", f"{used.get('mem', 0):g}")
        for task in framework["tasks"] + framework["completed_tasks"][-20:]:
            resources = task["resources"]
            tasks.add_row(task["id"], framework["name"], task["slave_id"], task["state"],
                          f"{resources.get('cpus', 0):g}", f"{resources.get('mem', 0):g}")
    console.print(frameworks)
    console.print(tasks)


@click.command("state")
@click.option("--http", default=DEFAULT_HTTP, show_default=True, help="Master HTTP HOST:PORT.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw /state document.")
def state_command(http: str, as_json: bool) -> None:
    """Show agents, frameworks and tasks."""
    state = fetch_state(http)
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        render(state, Console())
