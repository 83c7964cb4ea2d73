"""cli/framework_process: the flags every framework process takes, --zk and --zk-session-timeout
included, as FrameworkOptions fields; the combinations refused before anything starts."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from tepui.cli.framework_process import common, process_options
from tepui.sdk.framework_shell import FrameworkOptions
from tepui.sdk.zookeeper import DEFAULT_SESSION_TIMEOUT


def parsed(*args: str) -> tuple[int, Any]:
    seen: list[FrameworkOptions] = []

    @click.command()
    @process_options("services", 5090, "SQLite file.")
    def command(**flags: Any) -> None:
        seen.append(FrameworkOptions(**common(flags)))

    result = CliRunner().invoke(command, list(args))
    return result.exit_code, seen[0] if seen else result.output


def test_without_zk_the_instance_is_alone_on_its_store() -> None:
    code, options = parsed("--store", "/s.sqlite")
    assert code == 0 and (options.zk, options.store) == (None, "/s.sqlite")
    assert options.zk_session_timeout == DEFAULT_SESSION_TIMEOUT


def test_zk_and_its_session_timeout_fill_the_options() -> None:
    code, options = parsed("--zk", "zk://h1:2181,h2:2181/tepui", "--zk-session-timeout", "3.5",
                           "--master", "zk://h1:2181,h2:2181/tepui", "--http-port", "6001")
    assert code == 0
    assert (options.zk, options.zk_session_timeout, options.master, options.http_port, options.store) == (
        "zk://h1:2181,h2:2181/tepui", 3.5, "zk://h1:2181,h2:2181/tepui", 6001, "")


@pytest.mark.parametrize("args, message", [
    (["--zk", "zk://h:2181/t", "--store", "/s.sqlite"], "--store and --zk exclude each other"),
    (["--zk", "h:2181/t"], "is not a ZooKeeper URL"),
    (["--zk", "zk://h:2181"], "names no path"),
    (["--zk-session-timeout", "0"], "must be > 0 seconds"),
])
def test_refused_combinations_name_the_flag(args: list[str], message: str) -> None:
    code, output = parsed(*args)
    assert code == 2 and message in output, output
