"""Command-line errors name what is wrong and say what to do next."""

from __future__ import annotations

import socket

from click.testing import CliRunner

from tepui.cli.main import cli


def test_agent_rejects_bad_resources_with_the_offending_text() -> None:
    result = CliRunner().invoke(cli, ["agent", "--resources", "cpus:lots"])
    assert result.exit_code == 2
    assert "bad scalar 'lots' for cpus" in result.output


def test_agent_rejects_bad_attributes_and_master_address() -> None:
    result = CliRunner().invoke(cli, ["agent", "--attributes", "rack"])
    assert result.exit_code == 2 and "expected NAME:VALUE" in result.output
    result = CliRunner().invoke(cli, ["agent", "--master", "127.0.0.1:notaport"])
    assert result.exit_code == 2 and "expected HOST:PORT" in result.output


def test_run_rejects_bad_env() -> None:
    result = CliRunner().invoke(cli, ["run", "--env", "NOEQUALS", "--", "true"])
    assert result.exit_code == 2 and "'NOEQUALS' is not NAME=VALUE" in result.output


def test_state_without_a_master_says_how_to_start_one() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    result = CliRunner().invoke(cli, ["state", "--http", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "tepui up" in result.output and f"127.0.0.1:{port}" in result.output


def test_up_refuses_a_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = CliRunner().invoke(cli, ["up", "--port", str(port), "--state-dir", "/tmp/tepui-cli-test"])
    assert result.exit_code == 1
    assert f"port {port} (--port) is already in use" in result.output


def test_up_needs_at_least_one_agent() -> None:
    result = CliRunner().invoke(cli, ["up", "--agents", "0"])
    assert result.exit_code == 2 and "at least one agent" in result.output
