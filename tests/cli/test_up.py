"""`tepui up`'s command lines (cli/up.py): what each child is started with. The children are
not started here (``Cluster._spawn`` records instead); supervision is test_up_supervision.py's."""

from __future__ import annotations

import io
import signal
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from tepui.cli import up, up_security
from tepui.cli.main import cli


def recording_cluster(state_dir: Path, agents: int, monkeypatch: pytest.MonkeyPatch) -> tuple[up.Cluster, dict[str, list[str]]]:
    cluster = up.Cluster(str(state_dir), agents, 5050, 5080, Console(file=io.StringIO()))
    spawned: dict[str, list[str]] = {}
    monkeypatch.setattr(cluster, "_spawn", lambda name, args, resumes_from: spawned.__setitem__(name, args))
    return cluster, spawned


def test_agent_args_go_to_every_agent_and_only_to_agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Last on the command line, so an --agent-arg also overrides what `tepui up` sets (for a
    flag given once, the last one counts)."""
    cluster, spawned = recording_cluster(tmp_path, 2, monkeypatch)
    cluster.start(None, ("--no-strict", "--log-level=debug"))
    assert sorted(spawned) == ["agent-1", "agent-2", "master"]
    for name in ("agent-1", "agent-2"):
        assert spawned[name][-3:] == ["--insecure", "--no-strict", "--log-level=debug"], spawned[name]
    assert "--no-strict" not in spawned["master"]
    cluster, spawned = recording_cluster(tmp_path, 1, monkeypatch)
    cluster.start(None)
    assert spawned["agent-1"][-1] == "--insecure"  # none given: nothing added


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_up_passes_each_agent_arg_to_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The option is repeatable and takes values that look like flags (``--agent-arg=--no-strict``
    and ``--agent-arg --no-strict`` alike)."""
    started: list[tuple[str, ...]] = []

    def start(self: up.Cluster, agent_resources: str | None, agent_args: tuple[str, ...] = ()) -> None:
        started.append(agent_args)
        raise click.ClickException("not starting anything here")

    monkeypatch.setattr(up.Cluster, "start", start)
    monkeypatch.setattr(up_security, "prepare", lambda *args: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # not the test process's handlers
    result = CliRunner().invoke(cli, ["up", "--state-dir", str(tmp_path), "--port", str(free_port()),
                                      "--http-port", str(free_port()), "--agent-arg=--no-strict",
                                      "--agent-arg", "--log-level=debug"])
    assert "not starting anything here" in result.output, result.output
    assert started == [("--no-strict", "--log-level=debug")]


def test_agents_get_the_clusters_token_and_the_master_may_relay_to_the_frameworks_apis_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: an agent's files API needs the token (else `tepui logs` gets 401s), and the
    master relays to loopback only where allowed (the services framework's API, http port + 10,
    the batch framework's, + 11, and the cron framework's, + 12)."""
    monkeypatch.setenv("TEPUI_CONFIG", str(tmp_path / "client.yaml"))
    cluster, spawned = recording_cluster(tmp_path / "state", 2, monkeypatch)
    (tmp_path / "state").mkdir()
    cluster.security = up_security.prepare(str(tmp_path / "state"), 5050, 5080, 2)
    cluster.start(None)
    token_file = str(tmp_path / "state" / "http-token")
    for name in ("agent-1", "agent-2"):
        args = spawned[name]
        assert args[args.index("--http-token-file") + 1] == token_file, args
    master = spawned["master"]
    assert [master[i + 1] for i, arg in enumerate(master) if arg == "--proxy-allow"] == ["127.0.0.1:5090",
                                                                                          "127.0.0.1:5091",
                                                                                          "127.0.0.1:5092"]
    assert master[master.index("--http-token-file") + 1] == token_file


def test_the_cron_framework_submits_through_the_masters_proxy_with_the_clusters_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tepui cron serve` on http port + 12, its store in the state dir, its fires sent to the
    batch framework's API through the master (which needs the cluster token for a submit)."""
    monkeypatch.setenv("TEPUI_CONFIG", str(tmp_path / "client.yaml"))
    cluster, spawned = recording_cluster(tmp_path / "state", 1, monkeypatch)
    (tmp_path / "state").mkdir()
    cluster.security = up_security.prepare(str(tmp_path / "state"), 5050, 5080, 1)
    cluster.start_cron()
    assert spawned["cron"] == ["cron", "serve", "--master", "127.0.0.1:5050", "--http-port", "5092",
                               "--store", str(tmp_path / "state" / "cron.sqlite"),
                               "--batch", "http://127.0.0.1:5080/frameworks/batch/v1",
                               "--http-token-file", str(tmp_path / "state" / "http-token")]


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cron_port_taken() -> socket.socket:
    """A listening socket on a port whose neighbours `tepui up` checks first (http port, + 10,
    + 11) are free, so that the refusal names the cron port (+ 12): on a machine with thousands
    of loopback sockets open, a random neighbour was often taken and named instead."""
    for _attempt in range(100):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        if port > 1036 and all(_is_free(port - 12 + offset) for offset in (0, 10, 11)):
            sock.listen()
            return sock
        sock.close()
    raise AssertionError("no port with free neighbours in 100 tries")


def test_up_refuses_when_the_cron_frameworks_port_is_taken(tmp_path: Path) -> None:
    with _cron_port_taken() as sock:
        taken = sock.getsockname()[1]
        result = CliRunner().invoke(cli, ["up", "--port", str(free_port()), "--http-port", str(taken - 12),
                                          "--state-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert f"port {taken} (--http-port + 12, the cron framework's API) is already in use" in result.output
