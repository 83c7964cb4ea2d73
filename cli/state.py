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
    """--http when not given: $TEPUI_MASTER_HTTP, else a zk:// master ($TEPUI_MASTER or the
    client configuration's), else the configuration's master_http (`tepui up` writes it), else
    127.0.0.1:5080. Called by click only when the flag is absent; a zk:// answer is looked up by
    :func:`http_address`, the options' callback."""
    from tepui.sdk.config import ClientConfig, ConfigError, load_client_config, master_http_address

    try:
        config = load_client_config()
    except ConfigError:
        config = ClientConfig()
    return master_http_address(None, config)


DEFAULT_HTTP = default_http
ZK_META = "tepui.master_zk"  # click context meta: the zk:// address --http was given as


def http_address(ctx: click.Context, _param: Any, value: str) -> str:
    """The callback of every ``--http`` option: ``zk://h1:p1,h2:p2/path`` (given, or from
    :func:`default_http`) becomes the serving master's HTTP URL, read from ZooKeeper now; when
    there is none the command stops with what to do (:mod:`tepui.sdk.master_lookup`)."""
    from tepui.sdk.zookeeper import is_zk

    if not is_zk(value):
        return value
    from tepui.sdk.master_lookup import NoServingMaster, leader_http

    ctx.meta[ZK_META] = value
    try:
        return leader_http(value)
    except (NoServingMaster, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def masters_table(url: str) -> Table | None:
    """The masters under ``<path>/masters`` of ``url``, in election order: which one leads
    (None when there is none: the error that follows says so)."""
    from tepui.sdk.master_lookup import NoServingMaster, list_masters

    try:
        entries = list_masters(url)
    except NoServingMaster as exc:
        raise click.ClickException(str(exc)) from None
    if not entries:
        return None
    table = _table(f"Masters ({url})", [("ID", "left"), ("ADDRESS", "left"), ("HTTP", "left"), ("ROLE", "left"),
                                         ("EPOCH", "right"), ("NODE", "left")])
    for entry in entries:
        info = entry.info
        if info is None:
            table.add_row("?", "", "", "unreadable", "", entry.node)
            continue
        # The first node without an epoch: elected, still recovering its registry (nobody follows it yet).
        role = "electing" if entry is entries[0] and not entry.leading else entry.role
        table.add_row(info.id, info.address, info.http, role, str(info.epoch), entry.node)
    return table


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
@click.option("--http", default=DEFAULT_HTTP, show_default=True,
              help="Master HTTP HOST:PORT, or zk://H1:P1,H2:P2/PATH: the serving master's, and a table of the masters.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw /state document.")
@click.option("--completed", default=10, show_default=True, help="How many completed tasks to list.")
def state_command(http: str, as_json: bool, completed: int) -> None:
    """Show agents, frameworks, running and recently completed tasks (and, for an HA cluster
    given as zk://, which master leads)."""
    from tepui.sdk.zookeeper import is_zk

    console = Console(emoji=False)  # ids and names are data: `:x:` is no emoji
    if not console.is_terminal:
        console = Console(width=250, emoji=False)  # piped: never wrap or cut rows at 80 columns
    if is_zk(http):
        # The masters first: when none serves, the table shows why before the error says so.
        table = None if as_json else masters_table(http)
        if table is not None:
            console.print(table)
        http = http_address(click.get_current_context(), None, http)
    state = fetch_state(http)
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        render(state, console, completed)
