"""The CLI and the client configuration given a ``zk://`` master (tepui.sdk.master_lookup),
against the real ZooKeeper at TEPUI_TEST_ZK (scripts/test starts one), each test under its own
/tepui-test/<uuid> path, deleted afterwards: the serving master's HTTP URL is what commands
call; ``tepui state`` shows which master leads; no leader and no ZooKeeper are clear errors."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from tepui.cli.main import cli
from tepui.sdk.config import ClientConfig, master_http_address, resolve_master_http
from tepui.sdk.master_lookup import NoServingMaster, leader_http, list_masters
from tests.zookeeper_access import zk_client, zk_hosts

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Iterator[tuple[str, Any]]:
    """A zk:// URL under a fresh path, and a function publishing a master's node there."""
    path = f"/tepui-test/{uuid.uuid4().hex}"
    with zk_client() as client:

        def publish(master_id: str, http: str, epoch: int, address: str = "127.0.0.1:5050") -> str:
            data = json.dumps({"id": master_id, "address": address, "http": http, "epoch": epoch}).encode()
            return str(client.create(f"{path}/masters/json.info_", data, ephemeral=True, sequence=True,
                                     makepath=True))

        try:
            yield f"zk://{zk_hosts()}{path}", publish
        finally:
            client.delete(path, recursive=True)


@contextlib.contextmanager
def state_server(document: dict[str, Any]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(document if self.path == "/state" else {}).encode()
            self.send_response(200 if self.path == "/state" else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_serving_masters_http_url_is_the_first_nodes_once_it_published_its_epoch(cluster: Any) -> None:
    url, publish = cluster
    publish("m1", "http://m1:5080", 4)
    publish("m2", "http://m2:5080", 0)
    assert leader_http(url) == "http://m1:5080"
    entries = list_masters(url)
    assert [(e.info.id if e.info else None, e.leading, e.role) for e in entries] == [
        ("m1", True, "leading"), ("m2", False, "standby")]


def test_the_client_configuration_and_TEPUI_MASTER_name_a_zk_master_whose_http_is_looked_up(
        cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, publish = cluster
    publish("m1", "http://m1:5080", 2)
    monkeypatch.delenv("TEPUI_MASTER_HTTP", raising=False)
    monkeypatch.delenv("TEPUI_MASTER", raising=False)
    config = ClientConfig(master=url, master_http="http://stale:5080")
    assert master_http_address(None, config) == url
    assert resolve_master_http(None, config) == "http://m1:5080"
    assert resolve_master_http("http://explicit:1", config) == "http://explicit:1"
    monkeypatch.setenv("TEPUI_MASTER", url)
    assert resolve_master_http(None, ClientConfig()) == "http://m1:5080"


def test_no_serving_master_is_an_error_naming_the_url_and_what_to_do(cluster: Any) -> None:
    url, publish = cluster
    with pytest.raises(NoServingMaster, match=r"no master runs under zk://.*has no contenders.*tepui master --zk"):
        leader_http(url)
    publish("m1", "http://m1:5080", 0)
    with pytest.raises(NoServingMaster, match=r"no master serves under zk://.* the first \(m1\) has not published "
                                              r"its epoch.*Try again in a few seconds"):
        leader_http(url)


def test_an_unreachable_zookeeper_is_an_error_naming_the_servers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    url = f"zk://127.0.0.1:{port}/tepui"
    with pytest.raises(NoServingMaster, match=rf"cannot find the master of {url}: no ZooKeeper server of "
                                              rf"127.0.0.1:{port} answered within 1 s.*--http"):
        leader_http(url, timeout=1.0)


def test_tepui_state_shows_which_master_leads_and_reads_the_leaders_state(cluster: Any) -> None:
    url, publish = cluster
    with state_server({"id": "m1", "epoch": 3}) as http_url:
        publish("m1", http_url, 3, "10.0.0.1:5050")
        publish("m2", "http://m2:5080", 0, "10.0.0.2:5050")
        result = CliRunner().invoke(cli, ["state", "--http", url, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {"id": "m1", "epoch": 3}
        # Without --json the masters table comes first; the /state document here is too thin to
        # render, which is this test's fake, not the table's concern.
        result = CliRunner().invoke(cli, ["state", "--http", url])
    lines = result.output.splitlines()
    [m1] = [line for line in lines if "m1" in line and "leading" in line]
    [m2] = [line for line in lines if "m2" in line and "standby" in line]
    assert "10.0.0.1:5050" in m1 and http_url in m1 and "10.0.0.2:5050" in m2
    assert m1.index("leading") == m2.index("standby"), "aligned columns"


def test_tepui_state_without_a_serving_master_lists_the_masters_then_says_what_to_do(cluster: Any) -> None:
    url, publish = cluster
    publish("m1", "http://m1:5080", 0)
    result = CliRunner().invoke(cli, ["state", "--http", url])
    assert result.exit_code == 1
    assert "electing" in result.output
    assert f"no master serves under {url} yet" in result.output
