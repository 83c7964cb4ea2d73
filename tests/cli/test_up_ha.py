"""`tepui up --ha`'s command lines, client configuration, leader reports and refusals
(cli/up_ha.py, cli/up.py). Nothing is started here (``Cluster._spawn`` records); the real
cluster is test_up_ha_real.py's."""

from __future__ import annotations

import io
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from tepui.cli import ha_ports, up, up_ha, up_security
from tepui.cli.main import cli
from tepui.sdk.leadership import LeaderInfo

ZK = "zk://127.0.0.1:21050,127.0.0.1:21051,127.0.0.1:21052/tepui"


def recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[up_ha.HaCluster, dict[str, tuple[list[str], str]]]:
    monkeypatch.setenv("TEPUI_CONFIG", str(tmp_path / "client.yaml"))
    state = tmp_path / "state"
    state.mkdir()
    cluster = up_ha.HaCluster(str(state), 2, ha_ports.plan(5050, 5080), ZK, None, Console(file=io.StringIO()))
    cluster.security = up_security.prepare(str(state), 5050, 5080, 2, ZK)
    spawned: dict[str, tuple[list[str], str]] = {}
    monkeypatch.setattr(cluster, "_spawn", lambda name, args, resumes_from, restarts_as="":
                        spawned.__setitem__(name, (args, restarts_as)))
    cluster.start(None, ("--no-strict",))
    cluster.start_services()
    cluster.start_batch()
    cluster.start_cron()
    return cluster, spawned


def test_three_masters_on_the_ensemble_with_one_key_store_and_token_relaying_to_every_instance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, spawned = recording(tmp_path, monkeypatch)
    state = tmp_path / "state"
    assert sorted(spawned) == ["agent-1", "agent-2", "batch-1", "batch-2", "cron-1", "cron-2", "master-1", "master-2",
                               "master-3", "services-1", "services-2"]
    allow = [arg for port in (5090, 5091, 5092, 5093, 5094, 5095) for arg in ("--proxy-allow", f"127.0.0.1:{port}")]
    for i, (port, http) in enumerate(((5050, 5080), (5051, 5081), (5052, 5082)), start=1):
        assert spawned[f"master-{i}"] == (
            ["master", "--ip", "127.0.0.1", "--port", str(port), "--http-port", str(http), "--zk", ZK,
             "--acls", str(state / "acls.yaml"), *allow, "--keys", str(state / "keys"),
             "--http-token-file", str(state / "http-token")],
            "as a standby (it joins the election again)")


def test_agents_follow_the_leader_on_any_free_files_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--http-port 0``: the default 5051 is master-2's ZeroMQ port (cli/ha_ports.py)."""
    _cluster, spawned = recording(tmp_path, monkeypatch)
    state = tmp_path / "state"
    args, restarts_as = spawned["agent-1"]
    assert args == ["agent", "--master", ZK, "--work-dir", str(state / "agent-1"), "--hostname", "agent-1",
                    "--http-port", "0", "--resources", "ports:[31000-31499]",
                    "--keys", str(state / "keys" / "issued" / "agent-1"),
                    "--http-token-file", str(state / "http-token"), "--no-strict"]
    assert restarts_as == ""  # an agent comes back on its work dir, as with one master


def test_two_instances_of_each_framework_elected_in_zookeeper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cluster, spawned = recording(tmp_path, monkeypatch)
    token = ["--http-token-file", str(tmp_path / "state" / "http-token")]
    assert spawned["services-1"][0] == ["services", "--master", ZK, "--zk", ZK, "--http-port", "5090", *token]
    assert spawned["services-2"][0] == ["services", "--master", ZK, "--zk", ZK, "--http-port", "5093", *token]
    assert spawned["batch-2"][0] == ["batch", "--master", ZK, "--zk", ZK, "--http-port", "5094", *token]
    assert spawned["cron-1"][0] == ["cron", "serve", "--master", ZK, "--zk", ZK, "--http-port", "5092", *token,
                                    "--batch", "http://127.0.0.1:5080/frameworks/batch/v1"]
    assert {spawned[name][1] for name in spawned if not name.startswith("agent")} == {
        "as a standby (it joins the election again)"}


def test_the_client_configuration_names_the_ensemble_and_no_master_http(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    recording(tmp_path, monkeypatch)
    written = yaml.safe_load((tmp_path / "client.yaml").read_text())
    assert written["master"] == ZK
    assert "master_http" not in written  # any master may be a standby: clients ask ZooKeeper
    assert written["master_public_key"]  # the one key every master serves (one key store)


def test_a_change_of_leader_is_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, _spawned = recording(tmp_path, monkeypatch)
    m1 = LeaderInfo("a1", "127.0.0.1:5050", "http://127.0.0.1:5080", epoch=7)
    m2 = LeaderInfo("b2", "127.0.0.1:5051", "http://127.0.0.1:5081", epoch=9)
    s1 = LeaderInfo("services@127.0.0.1:5090", http="http://127.0.0.1:5090", epoch=1)
    s2 = LeaderInfo("services@127.0.0.1:5093", http="http://127.0.0.1:5093", epoch=2)
    assert cluster.changes(up_ha.Leaders(m1, {"services": s1})) == []  # the baseline
    assert cluster.changes(up_ha.Leaders(m1, {"services": s1})) == []
    assert cluster.changes(up_ha.Leaders(None, {"services": s1})) == []  # an election: said once it is over
    assert cluster.changes(up_ha.Leaders(m2, {"services": s2})) == [
        "master-2 is the leading master now (http://127.0.0.1:5081, epoch 9)",
        "services-2 is the services framework's leader now (http://127.0.0.1:5093, epoch 2)"]
    assert cluster.changes(up_ha.Leaders(m2, {"services": s2})) == []


def test_children_are_grouped_by_kind_for_the_ordered_stop() -> None:
    def child(name: str) -> up.Child:
        return up.Child(name, [], "", "", lambda: None, None, None)  # type: ignore[arg-type]  # never run

    assert [child(n).kind for n in ("master", "master-2", "agent-10", "services-1", "cron", "x-y")] == [
        "master", "master", "agent", "services", "cron", "x-y"]
    assert child("master-2").restart_phrase() == ""
    assert up.Child("a", [], "", "its work dir", lambda: None, None, None).restart_phrase() == "on its work dir"  # type: ignore[arg-type]


def invoke(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # not the test process's handlers
    return CliRunner().invoke(cli, ["up", *args])


def test_zk_without_ha_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(["--zk", ZK, "--state-dir", str(tmp_path)], monkeypatch)
    assert result.exit_code == 2
    assert "names the ZooKeeper of `tepui up --ha`: add --ha" in result.output


def test_without_zookeeper_installed_nor_given_it_says_how_to_get_one(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tepui.cli import ensemble

    monkeypatch.setattr(ensemble, "installed", lambda: False)
    result = invoke(["--ha", "--port", "47050", "--http-port", "47080", "--state-dir", str(tmp_path)], monkeypatch)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "`tepui up --ha` needs a ZooKeeper ensemble" in text, text
    assert "`apt-get install zookeeperd`" in text and "--zk zk://HOST1:PORT1,HOST2:PORT2,HOST3:PORT3/tepui" in text


def test_an_unreachable_zk_is_refused_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up.Cluster, "start", lambda *a: pytest.fail("started"))
    monkeypatch.setattr(up_ha, "ZK_CHECK_TIMEOUT", 1.0)
    result = invoke(["--ha", "--zk", "zk://127.0.0.1:1/tepui", "--port", "47050", "--http-port", "47080",
                     "--state-dir", str(tmp_path)], monkeypatch)
    assert result.exit_code == 1
    assert "--zk zk://127.0.0.1:1/tepui: no ZooKeeper server of 127.0.0.1:1 answered within 1 s" in " ".join(result.output.split())


def test_colliding_ports_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(["--ha", "--port", "47050", "--http-port", "47051", "--state-dir", str(tmp_path)], monkeypatch)
    assert result.exit_code == 1
    assert "the ports of `tepui up --ha` collide: port 47051 would be both master-1's HTTP port and master-2's " \
           "ZeroMQ port" in " ".join(result.output.split())


def test_the_ha_state_dir_is_its_own() -> None:
    assert up.default_state_dir(5050, ha=True).endswith("/tepui-ha")
    assert up.default_state_dir(6050, ha=True).endswith("/tepui-ha-6050")
    assert up.default_state_dir(5050).endswith("/tepui")


class FakeProcess:
    def __init__(self, name: str, log: list[tuple[str, int]]) -> None:
        self.name, self.log, self.code = name, log, None

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, sig: int) -> None:
        self.log.append((self.name, sig))
        self.code = 0

    def wait(self, timeout: float | None = None) -> int:
        return 0


def test_standbys_stop_first_then_frameworks_agents_and_the_leading_master_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A standby stopped after its leader would be elected and begin to take over, for nothing."""
    cluster = up_ha.HaCluster(str(tmp_path), 1, ha_ports.plan(5050, 5080), ZK, None, Console(file=io.StringIO()))
    log: list[tuple[str, int]] = []
    for name in ("master-1", "master-2", "master-3", "agent-1", "services-1", "services-2", "batch-1", "batch-2"):
        cluster.children.append(up.Child(name, [], "", "", lambda: None, FakeProcess(name, log),  # type: ignore[arg-type]
                                         up.History(0.0)))
    m2 = LeaderInfo("b2", "127.0.0.1:5051", "http://127.0.0.1:5081", epoch=9)
    s1 = LeaderInfo("services@127.0.0.1:5090", http="http://127.0.0.1:5090", epoch=1)
    # batch: no leader known (an election): neither instance counts as a standby
    monkeypatch.setattr(cluster, "leaders", lambda: up_ha.Leaders(m2, {"services": s1, "batch": None}))
    cluster.stop()
    term, usr1 = signal.SIGTERM, signal.SIGUSR1
    assert log == [("master-1", term), ("master-3", term), ("services-2", term),
                   ("services-1", term), ("batch-1", term), ("batch-2", term), ("agent-1", usr1), ("master-2", term)]
