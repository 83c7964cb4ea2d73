"""``tepui state``: the master's ``/state`` as aligned tables."""

from __future__ import annotations

import json
import urllib.error
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tepui.cli.http_client import open_url, unauthorized_hint

def default_http() -> str:
    """--http when not given: $TEPUI_MASTER_HTTP, else the client configuration (`tepui up`
    writes it), else 127.0.0.1:5080. Called by click only when the flag is absent."""
    from tepui.sdk.config import ClientConfig, ConfigError, load_client_config, resolve_master_http

    try:
        config = load_client_config()
    except ConfigError:
        config = ClientConfig()
    return resolve_master_http(None, config)


DEFAULT_HTTP = default_http


def fetch_state(http: str, timeout: float = 5.0) -> dict[str, Any]:
    url = http if http.startswith("http") else f"http://{http}"
    try:
        with open_url(f"{url.rstrip('/')}/state", timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise click.ClickException(unauthorized_hint(exc) or f"the master at {url} answered HTTP {exc.code} "
                                   "to /state; see its log") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(
            f"cannot reach the master's HTTP API at {url}: {reason}. "
            "Is a cluster running? Start one with `tepui up`, or pass --http HOST:PORT."
        ) from None


def _used(used: dict[str, Any], total: dict[str, Any], name: str) -> str:
    return f"{used.get(name, 0):g} / {total.get(name, 0):g}"


def _table(title: str, columns: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in columns:
        # Ids are never cut: a truncated id cannot be told apart or copied.
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    return table


def render(state: dict[str, Any], console: Console, completed: int = 10) -> None:
    console.print(f"[bold]master[/bold] {state['id']} at {state['address']} (epoch {state['epoch']}): "
                  f"{state['activated_slaves']} agents, {len(state['frameworks'])} frameworks, "
                  f"{state['outstanding_offers']} outstanding offers", soft_wrap=True)
    hostnames = {agent["id"]: agent["hostname"] for agent in state["slaves"]}
    agents = _table("Agents", [("ID", "left"), ("HOST", "left"), ("CPUS used/total", "right"),
                               ("MEM MiB used/total", "right"), ("DISK MiB used/total", "right"),
                               ("TASKS", "right"), ("ATTRIBUTES", "left")])
    for agent in sorted(state["slaves"], key=lambda a: a["hostname"]):
        total, used = agent["resources"], agent["used_resources"]
        attributes = ";".join(f"{k}:{v}" for k, v in sorted(agent["attributes"].items()))
        agents.add_row(agent["id"], agent["hostname"], _used(used, total, "cpus"), _used(used, total, "mem"),
                       _used(used, total, "disk"), str(agent["task_count"]), attributes)
    console.print(agents)
    frameworks = _table("Frameworks", [("ID", "left"), ("NAME", "left"), ("ROLES", "left"), ("CONNECTED", "left"),
                                       ("TASKS", "right"), ("CPUS", "right"), ("MEM MiB", "right"),
                                       ("OFFERS", "left")])
    tasks = _table("Tasks", [("ID", "left"), ("FRAMEWORK", "left"), ("HOST", "left"), ("STATE", "left"),
                             ("CPUS", "right"), ("MEM MiB", "right")])
    for framework in state["frameworks"]:
        used = framework["used_resources"]
        why = "; ".join(f"{a['role']}: {a['reason'].lower()}" for a in framework.get("allocation", []))
        frameworks.add_row(framework["id"], framework["name"], ",".join(framework["roles"]),
                           "yes" if framework["connected"] else "no", str(len(framework["tasks"])),
                           f"{used.get('cpus', 0):g}", f"{used.get('mem', 0):g}", why)
        for task in framework["tasks"]:
            resources = task["resources"]
            tasks.add_row(task["id"], framework["name"], hostnames.get(task["slave_id"], task["slave_id"]),
                          task["state"], f"{resources.get('cpus', 0):g}", f"{resources.get('mem', 0):g}")
    console.print(frameworks)
    console.print(tasks)
    finished = []
    for framework in state["frameworks"] + state["completed_frameworks"]:
        for task in framework["completed_tasks"]:
            ended = task["statuses"][-1]["timestamp"] if task["statuses"] else 0
            finished.append((ended or 0, task, framework["name"]))
    finished.sort(key=lambda item: item[0], reverse=True)
    if finished and completed > 0:
        done = _table(f"Completed tasks (latest {min(completed, len(finished))} of {len(finished)})",
                      [("ID", "left"), ("FRAMEWORK", "left"), ("HOST", "left"), ("STATE", "left"), ("EXIT", "right"),
                       ("MESSAGE", "left")])
        for _ended, task, name in finished[:completed]:
            exit_code = "" if task.get("exit_code") is None else str(task["exit_code"])
            done.add_row(task["id"], name, hostnames.get(task["slave_id"], task["slave_id"]), task["state"],
                         exit_code, task.get("message") or "")
        console.print(done)


@click.command("state")
@click.option("--http", default=DEFAULT_HTTP, show_default=True, help="Master HTTP HOST:PORT.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw /state document.")
@click.option("--completed", default=10, show_default=True, help="How many completed tasks to list.")
def state_command(http: str, as_json: bool, completed: int) -> None:
    """Show agents, frameworks, running and recently completed tasks."""
    state = fetch_state(http)
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        console = Console(emoji=False)  # ids and names are data: `:x:` is no emoji
        if not console.is_terminal:
            console = Console(width=250, emoji=False)  # piped: never wrap or cut rows at 80 columns
        render(state, console, completed)
