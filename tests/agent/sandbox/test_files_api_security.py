"""The agent's sandbox files API is secure by default (issue 15: it had "no TLS and no token"):
reads need the cluster's token, an agent without a token file serves no file to anyone, TLS with
``--tls-cert/--tls-key``, and the master's ``/tasks/<id>/files/*`` proxy reaching such an agent
over verified TLS with that agent's read relay token — never the cluster token, which anyone
holding an agent key could otherwise learn by registering an address of their own.

Over real loopback sockets on a private reactor (tests/private_reactor.py): the agent's site as
``run_agent`` builds it (``files_policy``, ``files_site``, ``listen_http``) and the master's
``TasksEndpoint``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from twisted.web import resource
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from tepui.agent.core import AgentConfig, AgentCore
from tepui.agent.sandbox.files_http import build_root, files_policy, files_site
from tepui.agent.main import listen_http
from tepui.master.core import MasterConfig, MasterCore
from tepui.master.events import Received
from tepui.master.http.files_proxy import Located, TasksEndpoint
from tepui.master.http.state_view import agent_url
from tepui.sdk.http_security import client_tls, relay_token, tls_context
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol.values import AgentInfo
from tepui.sdk.resources import Resources
from tests.private_reactor import run
from tests.tls_certs import self_signed

TOKEN = "cluster-token-0123456789abcdef"
FID, TID = "F1", "t1"
AID = "S1"  # the agent's id, as the master issued it


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    sandbox = tmp_path / "work" / "sandboxes" / FID / TID
    sandbox.mkdir(parents=True)
    (sandbox / "stdout").write_text("hello from the task\n")
    return tmp_path / "work"


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "http-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


READ = f"/files/read?framework_id={FID}&task_id={TID}&path=stdout"


def serve(reactor: Any, work_dir: Path, policy: Any, tls: Any = None,
          agent_id: Callable[[], str | None] = lambda: AID) -> int:
    site = files_site(build_root(str(work_dir), lambda: {"healthy": True}), policy, agent_id, reactor=reactor)
    return listen_http(reactor, site, "127.0.0.1", 0, tls)


async def get(reactor: Any, url: str, token: str | None = None, tls: Any = None) -> tuple[int, Any]:
    client = Agent(reactor, tls) if tls is not None else Agent(reactor)
    headers = Headers({b"authorization": [f"Bearer {token}".encode()]} if token else {})
    response = await client.request(b"GET", url.encode(), headers)
    body = await readBody(response)
    return response.code, json.loads(body)


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The agent's certificate (its own CA), its key, and another CA's certificate."""
    cert, key = self_signed(tmp_path, "agent")
    return cert, key, self_signed(tmp_path, "other")[0]


def serve_tls(reactor: Any, work_dir: Path, token_file: str, certs: tuple[Path, Path, Path],
              monkeypatch: pytest.MonkeyPatch) -> int:
    """The files API with the token and TLS. Twisted's client TLS flushes small writes on the
    global reactor unless told otherwise (``twisted.protocols.tls``); these tests run on a private one."""
    monkeypatch.setattr("twisted.protocols.tls._get_default_clock", lambda: reactor)
    return serve(reactor, work_dir, files_policy(token_file, None, False), tls_context(str(certs[0]), str(certs[1])))


async def stop_listening(reactor: Any) -> None:
    for port in list(reactor.getReaders()):
        if hasattr(port, "stopListening"):
            await port.stopListening()


# --- who may read -------------------------------------------------------------------------------


def test_an_agent_without_a_token_file_serves_no_sandbox_file_by_default(work_dir: Path) -> None:
    async def scenario(reactor: Any) -> None:
        port = serve(reactor, work_dir, files_policy(None, None, insecure=False))
        try:
            code, document = await get(reactor, f"http://127.0.0.1:{port}{READ}", token="any-token-at-all-really")
            assert (code, document["reason"]) == (401, "NO_TOKEN_CONFIGURED")
            assert "this agent has none configured: start it with --http-token-file" in document["error"]
            assert (await get(reactor, f"http://127.0.0.1:{port}/health"))[0] == 200
        finally:
            await stop_listening(reactor)

    run(scenario)


def test_reads_need_the_clusters_token(work_dir: Path, token_file: str) -> None:
    async def scenario(reactor: Any) -> None:
        port = serve(reactor, work_dir, files_policy(token_file, None, insecure=False))
        try:
            code, document = await get(reactor, f"http://127.0.0.1:{port}{READ}")
            assert (code, document["reason"]) == (401, "UNAUTHENTICATED")
            code, document = await get(reactor, f"http://127.0.0.1:{port}{READ}", token="not-the-token-0123456")
            assert (code, document["reason"]) == (401, "BAD_TOKEN")
            code, document = await get(reactor, f"http://127.0.0.1:{port}{READ}", token=TOKEN)
            assert code == 200 and document["data"] == "hello from the task\n"
        finally:
            await stop_listening(reactor)

    run(scenario)


def test_insecure_or_an_explicit_open_keeps_reads_open_and_token_without_a_file_is_refused(token_file: str) -> None:
    assert files_policy(None, None, insecure=True).read_auth == "open"
    assert files_policy(None, "open", insecure=False).read_auth == "open"
    assert files_policy(token_file, None, insecure=True).read_auth == "open"  # --insecure: tests' clusters
    closed = files_policy(None, None, insecure=False)
    assert (closed.read_auth, closed.token) == ("token", None)
    with pytest.raises(SystemExit, match="--http-read-auth token needs --http-token-file"):
        files_policy(None, "token", insecure=False)


# --- TLS ----------------------------------------------------------------------------------------


def test_tls_serves_https_only_to_a_client_that_trusts_the_ca(work_dir: Path, token_file: str,
                                                              certs: tuple[Path, Path, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cert, _, other_ca = certs

    async def scenario(reactor: Any) -> None:
        port = serve_tls(reactor, work_dir, token_file, certs, monkeypatch)
        try:
            code, document = await get(reactor, f"https://127.0.0.1:{port}{READ}", token=TOKEN,
                                       tls=client_tls(str(cert), "--agent-ca"))
            assert code == 200 and document["data"] == "hello from the task\n"
            with pytest.raises(Exception):  # a certificate from a CA it does not know
                await get(reactor, f"https://127.0.0.1:{port}{READ}", token=TOKEN,
                          tls=client_tls(str(other_ca), "--agent-ca"))
            with pytest.raises(Exception):  # plain HTTP is not served on that port at all
                await get(reactor, f"http://127.0.0.1:{port}{READ}", token=TOKEN)
        finally:
            await stop_listening(reactor)

    run(scenario)


def test_an_unusable_agent_ca_stops_the_master_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("nothing here\n")
    with pytest.raises(SystemExit, match="--agent-ca .*empty.pem: no PEM certificate"):
        client_tls(str(tmp_path / "empty.pem"), "--agent-ca")
    with pytest.raises(SystemExit, match="cannot read it"):
        client_tls(str(tmp_path / "missing.pem"), "--agent-ca")


# --- the master's proxy -------------------------------------------------------------------------


def test_an_agent_serving_tls_says_so_and_the_master_calls_it_with_https() -> None:
    config = AgentConfig(hostname="a1", resources=Resources.of(cpus=1), work_dir="/w", http_port=5051,
                         address="10.0.0.7", http_tls=True)
    info = AgentCore(config, lambda: b"u" * 16).agent_info()
    assert info.http_tls
    assert b"http_tls" in msgspec.msgpack.encode(info)
    assert b"http_tls" not in msgspec.msgpack.encode(AgentInfo(hostname="a", resources=[]))  # off the wire by default
    core = MasterCore(MasterConfig(master_id="m"))
    core.handle(Received(b"agent", am.RegisterAgent(info, "0.1")), 0.0)
    (agent,) = core.agents.values()
    assert agent_url(agent) == "https://10.0.0.7:5051"


def test_the_masters_files_proxy_reads_from_a_token_and_tls_agent(work_dir: Path, token_file: str,
                                                                  certs: tuple[Path, Path, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cert, _, other_ca = certs

    async def scenario(reactor: Any) -> None:
        from twisted.web import server

        port = serve_tls(reactor, work_dir, token_file, certs, monkeypatch)
        located = [Located(FID, TID, "TASK_RUNNING", AID, "a1", f"https://127.0.0.1:{port}")]
        trusting = TasksEndpoint(reactor, lambda task_id, fid: located, token=TOKEN,
                                 tls=client_tls(str(cert), "--agent-ca"))
        wary = TasksEndpoint(reactor, lambda task_id, fid: located, token=TOKEN,
                             tls=client_tls(str(other_ca), "--agent-ca"))
        no_token = TasksEndpoint(reactor, lambda task_id, fid: located, tls=client_tls(str(cert), "--agent-ca"))
        masters = [reactor.listenTCP(0, server.Site(endpoint, reactor=reactor), interface="127.0.0.1")
                   for endpoint in (trusting, wary, no_token)]
        try:
            urls = [f"http://127.0.0.1:{m.getHost().port}/{TID}/files/read?path=stdout" for m in masters]
            code, document = await get(reactor, urls[0])
            assert code == 200 and document["data"] == "hello from the task\n"
            code, document = await get(reactor, urls[1])
            assert (code, document["reason"]) == (502, "AGENT_UNREACHABLE")  # its certificate is not trusted
            code, document = await get(reactor, urls[2])
            assert (code, document["reason"]) == (401, "UNAUTHENTICATED")  # the agent's own refusal, relayed
        finally:
            await stop_listening(reactor)

    run(scenario)


# --- the token the files proxy sends (issue 15: never the cluster token) --------------------------


class RecordingAgent(resource.Resource):
    """An address someone holding an agent key registered: it records every header it gets."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, list[str]]] = []

    def render_GET(self, request: Any) -> bytes:
        self.seen.append({name.decode().lower(): [value.decode() for value in values]
                          for name, values in request.requestHeaders.getAllRawHeaders()})
        request.setHeader(b"content-type", b"application/json")
        return b'{"data": "", "offset": 0, "next_offset": 0, "size": 0, "eof": true}'


def master_reading(reactor: Any, located: list[Located], token: str | None = TOKEN) -> str:
    """The master's files proxy on a loopback port, finding the task in ``located``; its base URL."""
    from twisted.web import server

    endpoint = TasksEndpoint(reactor, lambda task_id, fid: located, token=token)
    port = reactor.listenTCP(0, server.Site(endpoint, reactor=reactor), interface="127.0.0.1")
    return f"http://127.0.0.1:{port.getHost().port}/{TID}/files"


def test_the_masters_files_proxy_sends_an_agent_its_read_relay_token_and_never_the_cluster_token() -> None:
    async def scenario(reactor: Any) -> None:
        from twisted.web import server

        hostile = RecordingAgent()
        port = reactor.listenTCP(0, server.Site(hostile, reactor=reactor), interface="127.0.0.1")
        base = master_reading(reactor, [Located(FID, TID, "TASK_RUNNING", AID, "a1",
                                                f"http://127.0.0.1:{port.getHost().port}")])
        try:
            assert (await get(reactor, f"{base}/read?path=stdout"))[0] == 200  # open: anyone can trigger it
            assert (await get(reactor, f"{base}/browse", token=TOKEN))[0] == 200
            assert len(hostile.seen) == 2
            for headers in hostile.seen:
                for name, values in headers.items():
                    assert not any(TOKEN in value for value in values), name
                assert headers["authorization"] == [f"Bearer {relay_token(TOKEN, AID, 'read', 'agent')}"]
        finally:
            await stop_listening(reactor)

    run(scenario)


def test_an_agents_files_api_serves_the_masters_token_for_it_and_refuses_other_agents_tokens(
        work_dir: Path, token_file: str) -> None:
    """Through the master: the agent it calls S1 is served; an agent that registered the same
    address under another id (S2) gets S2's token, which S1 refuses (relayed 401)."""

    async def scenario(reactor: Any) -> None:
        port = serve(reactor, work_dir, files_policy(token_file, None, insecure=False))
        url = f"http://127.0.0.1:{port}"
        as_s1 = master_reading(reactor, [Located(FID, TID, "TASK_RUNNING", AID, "a1", url)])
        as_s2 = master_reading(reactor, [Located(FID, TID, "TASK_RUNNING", "S2", "a2", url)])
        try:
            code, document = await get(reactor, f"{as_s1}/read?path=stdout")
            assert code == 200 and document["data"] == "hello from the task\n"
            code, document = await get(reactor, f"{as_s2}/read?path=stdout")
            assert (code, document["reason"]) == (401, "BAD_TOKEN")
            # Straight to the agent: the cluster token (operators, `tepui logs` direct) still works.
            assert (await get(reactor, f"{url}{READ}", token=TOKEN))[0] == 200
            assert (await get(reactor, f"{url}{READ}", token=relay_token(TOKEN, AID, "read", "agent")))[0] == 200
        finally:
            await stop_listening(reactor)

    run(scenario)


def test_an_agent_refuses_framework_relay_tokens_and_write_tokens_even_its_own(work_dir: Path,
                                                                                token_file: str) -> None:
    async def scenario(reactor: Any) -> None:
        port = serve(reactor, work_dir, files_policy(token_file, None, insecure=False))
        try:
            refused = [relay_token(TOKEN, FID, "read"), relay_token(TOKEN, FID, "write"),  # framework F1's
                       relay_token(TOKEN, AID, "read"), relay_token(TOKEN, f"agent:{AID}", "read"),  # named like it
                       relay_token(TOKEN, AID, "write", "agent")]  # never issued: the proxy relays reads only
            for token in refused:
                code, document = await get(reactor, f"http://127.0.0.1:{port}{READ}", token=token)
                assert (code, document["reason"]) == (401, "BAD_TOKEN"), token
        finally:
            await stop_listening(reactor)

    run(scenario)


def test_before_it_knows_its_id_an_agent_accepts_the_cluster_token_only(work_dir: Path, token_file: str) -> None:
    """The id comes with registration or from the checkpoint; until then no relay token opens it."""
    known: dict[str, str | None] = {"id": None}

    async def scenario(reactor: Any) -> None:
        port = serve(reactor, work_dir, files_policy(token_file, None, insecure=False), agent_id=lambda: known["id"])
        url, scoped = f"http://127.0.0.1:{port}{READ}", relay_token(TOKEN, AID, "read", "agent")
        try:
            code, document = await get(reactor, url, token=scoped)
            assert (code, document["reason"]) == (401, "BAD_TOKEN")
            assert (await get(reactor, url, token=TOKEN))[0] == 200
            known["id"] = AID  # registered
            assert (await get(reactor, url, token=scoped))[0] == 200
        finally:
            await stop_listening(reactor)

    run(scenario)
