"""``tepui logs TASK_ID [--stderr] [--follow]``: a task's stdout or stderr, wherever it ran.

Through the master (``/tasks/<id>/files/read``, which proxies the agent's sandbox files API),
so only the master's HTTP address is needed. ``--follow`` reads on from where it was every
``--interval`` seconds until the master's ``/state`` says the task is terminal, then reads
what is left and exits (like ``nomad alloc logs -f``, which also ends with the task). The
output goes to stdout whichever stream is read, so it pipes.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
from typing import Any

import click
from tepui.cli.http_client import open_url, unauthorized_hint
from tepui.cli.state import DEFAULT_HTTP, http_address, fetch_state
from tepui.sdk.protocol.values import TERMINAL_STATES

TERMINAL = {state.value for state in TERMINAL_STATES}
CHUNK = 1024 * 1024


class NotYet(Exception):
    """The file is not there yet (the task is still being staged): in --follow, wait for it."""


def _base(http: str) -> str:
    return (http if http.startswith("http") else f"http://{http}").rstrip("/")


class TaskFiles:
    def __init__(self, http: str, task_id: str, framework_id: str | None, timeout: float = 20.0) -> None:
        self.base, self.task_id, self.framework_id, self.timeout = _base(http), task_id, framework_id, timeout

    def read(self, path: str, offset: int) -> dict[str, Any]:
        query = {"path": path, "offset": str(offset), "length": str(CHUNK)}
        if self.framework_id:
            query["framework_id"] = self.framework_id
        url = f"{self.base}/tasks/{urllib.parse.quote(self.task_id, safe='')}/files/read?{urllib.parse.urlencode(query)}"
        try:
            with open_url(url, self.timeout) as response:
                if self.framework_id is None:
                    # Pin the framework: a later read (or /state lookup) means this very task.
                    self.framework_id = response.headers.get("x-tepui-framework-id")
                return json.load(response)
        except urllib.error.HTTPError as exc:
            hint = unauthorized_hint(exc)
            if hint:
                raise click.ClickException(hint) from None
            raise self._refused(exc, path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise click.ClickException(
                f"cannot reach the master's HTTP API at {self.base}: {reason}. Is a cluster running? "
                "Start one with `tepui up`, or pass --http HOST:PORT.") from None

    def _refused(self, exc: urllib.error.HTTPError, path: str) -> Exception:
        try:
            document = json.loads(exc.read() or b"{}")
        except ValueError:
            document = {}
        reason, message = document.get("reason"), document.get("error") or f"HTTP {exc.code}"
        if reason == "UNKNOWN_TASK":
            return click.ClickException(f"{message}. `tepui state` lists running and recently completed tasks.")
        if reason == "AMBIGUOUS_TASK":
            lines = [f"  --framework {c['framework_id']}  (on {c.get('hostname') or c['agent_id']}, {c['state']})"
                     for c in document.get("candidates", [])]
            return click.ClickException(f"task id {self.task_id!r} exists in several frameworks; choose one:\n"
                                        + "\n".join(lines))
        if reason in ("NO_SUCH_FILE", "NO_SANDBOX"):
            return NotYet(f"task {self.task_id!r} has no {path} ({message})")
        if exc.code == 404 and reason is None:
            return click.ClickException(f"the master at {self.base} has no sandbox files API "
                                        "(an older version?); upgrade it, or read the sandbox on the agent")
        return click.ClickException(message)


def task_state(state: dict[str, Any], task_id: str, framework_id: str | None) -> str | None:
    """The task's state in ``/state`` (active tasks first), or None if it is not there."""
    frameworks = state.get("frameworks", []) + state.get("completed_frameworks", [])
    for key in ("tasks", "completed_tasks"):
        for framework in frameworks:
            if framework_id and framework.get("id") != framework_id:
                continue
            for task in reversed(framework.get(key, [])):
                if task.get("id") == task_id:
                    return str(task.get("state"))
    return None


def _write(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def drain(files: TaskFiles, path: str, offset: int) -> int:
    """Prints from ``offset`` up to the current end of the file; returns where it stopped."""
    while True:
        chunk = files.read(path, offset)
        _write(chunk.get("data", ""))
        offset = int(chunk.get("next_offset", offset + len(chunk.get("data", "").encode())))
        if chunk.get("eof", True):
            return offset


def follow_task(files: TaskFiles, http: str, path: str, interval: float) -> None:
    offset = 0
    while True:
        # The state first, the file second: whatever the task wrote before it ended is read
        # after we learn it ended.
        state = task_state(fetch_state(http), files.task_id, files.framework_id)
        finished = state is None or state in TERMINAL
        try:
            offset = drain(files, path, offset)
        except NotYet as exc:
            if finished:
                raise click.ClickException(str(exc)) from None
        if finished:
            return
        time.sleep(interval)


@click.command("logs")
@click.argument("task_id")
@click.option("--stderr", "stderr", is_flag=True, help="Print the task's stderr instead of its stdout.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the task ends.")
@click.option("--http", default=DEFAULT_HTTP, show_default=True, callback=http_address,
              help="Master HTTP HOST:PORT or zk://H1:P1,H2:P2/PATH ($TEPUI_MASTER_HTTP).")
@click.option("--framework", "framework_id", default=None, help="Framework id, when several have a task with this id.")
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(0.05), hidden=True,
              help="Seconds between reads with --follow.")
def logs_command(task_id: str, stderr: bool, follow: bool, http: str, framework_id: str | None,
                 interval: float) -> None:
    """Print a task's stdout (or stderr), running or finished, from whichever agent ran it.

    \b
    tepui logs run-1a2b3c4d
    tepui logs --stderr --follow web-7f3c
    """
    print_output(TaskFiles(http, task_id, framework_id), http, "stderr" if stderr else "stdout", follow, interval)


def print_output(files: TaskFiles, http: str, path: str, follow: bool, interval: float,
                 command: str = "tepui logs") -> None:
    """Prints the task's ``path`` (to its end, or with ``follow`` until the task ends), for
    ``tepui logs`` and ``tepui jobs logs`` (``command`` names it in the advice)."""
    try:
        if follow:
            follow_task(files, http, path, interval)
        else:
            try:
                drain(files, path, 0)
            except NotYet as exc:
                raise click.ClickException(f"{exc}; it may not have started yet (`{command} -f` waits)") from None
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `tepui logs ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        sys.exit(0)
