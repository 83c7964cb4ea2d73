"""``/files/download``: one sandbox file's raw bytes, from the agent and through the master's
files proxy (streamed), including a task the master forgot, reached by its ``agent_id`` — what
the batch framework's downstream tasks fetch (docs/batch.md, "Artifacts between stages").

Over real loopback sockets on a private reactor: the agent's site as ``run_agent`` builds it
(token policy, relay tokens) and the master's ``TasksEndpoint`` with the relay token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.web import resource, server
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from tepui.agent.main import listen_http
from tepui.agent.sandbox.files_http import FilesError, build_root, files_policy, files_site, open_download, sandbox_dir
from tepui.master.http.files_proxy import Located, TasksEndpoint
from tests.private_reactor import run

TOKEN = "cluster-token-0123456789abcdef"
FID, TID, AID = "F1", "map.0.1", "S1"
BIG = os.urandom(3 * 1024 * 1024 + 17)  # larger than any socket buffer: the stream really flows


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    sandbox = tmp_path / "work" / "sandboxes" / FID / TID
    (sandbox / "out" / "dir").mkdir(parents=True)
    (sandbox / "count.txt").write_text("42\n")
    (sandbox / "out" / "big.bin").write_bytes(BIG)
    (sandbox / "empty").write_bytes(b"")
    (tmp_path / "secret").write_text("outside")
    (sandbox / "leak").symlink_to(tmp_path / "secret")
    os.mkfifo(sandbox / "fifo")
    return tmp_path / "work"


def code_of(call: Any) -> tuple[int, str]:
    with pytest.raises(FilesError) as info:
        call()
    return info.value.code, info.value.reason


def test_open_download_gives_a_regular_file_and_its_size(work_dir: Path) -> None:
    box = sandbox_dir(str(work_dir), FID, TID)
    fd, size = open_download(box, "out/big.bin")
    try:
        assert size == len(BIG) and os.pread(fd, 16, 0) == BIG[:16]
    finally:
        os.close(fd)
    assert code_of(lambda: open_download(box, "out/dir")) == (400, "IS_A_DIRECTORY")
    assert code_of(lambda: open_download(box, "fifo")) == (400, "NOT_A_FILE")
    assert code_of(lambda: open_download(box, "leak")) == (403, "PATH_ESCAPES")
    assert code_of(lambda: open_download(box, "../x")) == (400, "BAD_PATH")
    assert code_of(lambda: open_download(box, "nope")) == (404, "NO_SUCH_FILE")
    assert code_of(lambda: open_download(box, "")) == (400, "BAD_REQUEST")


def test_a_directory_says_to_archive_it(work_dir: Path) -> None:
    box = sandbox_dir(str(work_dir), FID, TID)
    with pytest.raises(FilesError, match=r"'out/dir' is a directory: .*`tar czf out/dir.tgz out/dir`"):
        open_download(box, "out/dir")


async def fetch(reactor: Any, url: str, token: str | None = None) -> tuple[int, dict[str, list[bytes]], bytes]:
    """(code, headers, body); twisted's client keeps Content-Length out of ``headers``: it is
    put back from ``response.length``."""
    headers = Headers({b"authorization": [f"Bearer {token}".encode()]} if token else {})
    response = await Agent(reactor).request(b"GET", url.encode(), headers)
    body = await readBody(response)
    got = {k.decode().lower(): v for k, v in response.headers.getAllRawHeaders()}
    if isinstance(response.length, int):
        got["content-length"] = [str(response.length).encode()]
    return response.code, got, body


def serve_agent(reactor: Any, work_dir: Path, tmp_path: Path) -> int:
    token_file = tmp_path / "http-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    site = files_site(build_root(str(work_dir), lambda: {"healthy": True}),
                      files_policy(str(token_file), None, False), lambda: AID, reactor=reactor)
    return listen_http(reactor, site, "127.0.0.1", 0, None)


def serve_master(reactor: Any, agent_port: int, known: bool) -> str:
    url = f"http://127.0.0.1:{agent_port}"
    located = [Located(FID, TID, "TASK_FINISHED", AID, "a1", url)] if known else []
    agents = {AID: ("a1", url), "S2": ("a2", None)}
    endpoint = TasksEndpoint(reactor, lambda task_id, fid: located, token=TOKEN, agent=agents.get)
    port = reactor.listenTCP(0, server.Site(endpoint, reactor=reactor), interface="127.0.0.1")
    return f"http://127.0.0.1:{port.getHost().port}"


async def stop_listening(reactor: Any) -> None:
    for port in list(reactor.getReaders()):
        if hasattr(port, "stopListening"):
            await port.stopListening()


def test_download_from_the_agent_and_through_the_master(work_dir: Path, tmp_path: Path) -> None:
    async def scenario(reactor: Any) -> None:
        agent_port = serve_agent(reactor, work_dir, tmp_path)
        master = serve_master(reactor, agent_port, known=True)
        try:
            direct = f"http://127.0.0.1:{agent_port}/files/download?framework_id={FID}&task_id={TID}&path=out/big.bin"
            code, headers, body = await fetch(reactor, direct, TOKEN)
            assert (code, body == BIG) == (200, True)
            assert headers["content-type"] == [b"application/octet-stream"]
            assert headers["content-length"] == [str(len(BIG)).encode()]
            assert (await fetch(reactor, direct))[0] == 401  # the agent's files API needs a token

            # Through the master, with no credential (its reads are open): the master sends the
            # agent its read relay token, and streams the bytes unchanged.
            code, headers, body = await fetch(reactor, f"{master}/{TID}/files/download?path=out%2Fbig.bin")
            assert (code, body == BIG, headers["content-length"]) == (200, True, [str(len(BIG)).encode()])
            code, _, body = await fetch(reactor, f"{master}/{TID}/files/download?path=count.txt")
            assert (code, body) == (200, b"42\n")
            code, _, body = await fetch(reactor, f"{master}/{TID}/files/download?path=empty")
            assert (code, body) == (200, b"")
            code, _, body = await fetch(reactor, f"{master}/{TID}/files/download?path=out%2Fdir")
            assert (code, json.loads(body)["reason"]) == (400, "IS_A_DIRECTORY")  # the agent's refusal, relayed
            code, _, body = await fetch(reactor, f"{master}/{TID}/files/download?path=missing")
            assert (code, json.loads(body)["reason"]) == (404, "NO_SUCH_FILE")
        finally:
            await stop_listening(reactor)

    run(scenario)


def test_a_task_the_master_forgot_is_reached_by_its_agent_id(work_dir: Path, tmp_path: Path) -> None:
    async def scenario(reactor: Any) -> None:
        agent_port = serve_agent(reactor, work_dir, tmp_path)
        master = serve_master(reactor, agent_port, known=False)
        try:
            base = f"{master}/{TID}/files/download?path=count.txt"
            code, _, body = await fetch(reactor, f"{base}&framework_id={FID}&agent_id={AID}")
            assert (code, body) == (200, b"42\n")
            code, _, body = await fetch(reactor, f"{base}&framework_id=F9&agent_id={AID}")
            assert (code, json.loads(body)["reason"]) == (404, "NO_SANDBOX")  # the agent's answer
            code, _, body = await fetch(reactor, f"{base}&framework_id={FID}&agent_id=S9")
            assert (code, json.loads(body)["reason"]) == (502, "AGENT_GONE")
            code, _, body = await fetch(reactor, f"{base}&framework_id={FID}&agent_id=S2")
            assert (code, json.loads(body)["reason"]) == (502, "AGENT_NO_FILES_API")
            for partial in (f"{base}&agent_id={AID}", f"{base}&framework_id={FID}", base):
                code, _, body = await fetch(reactor, partial)
                assert (code, json.loads(body)["reason"]) == (404, "UNKNOWN_TASK")
        finally:
            await stop_listening(reactor)

    run(scenario)


# --- what the batch framework's downstream tasks do: the fetcher, through a token-read master ---


def test_the_fetcher_brings_an_output_through_a_master_whose_reads_need_a_token(work_dir: Path,
                                                                                tmp_path: Path) -> None:
    """A master with ``--http-read-auth token``: the URI of ``frameworks/batch/artifacts`` carries
    the task files token as its password, the fetcher sends it as Basic auth, the master's guard
    takes it for that one task's files, and the output lands at ``map/0/...`` in the sandbox."""
    from twisted.internet import threads

    from tepui.agent.fetching.fetcher import Fetcher, FetchError
    from tepui.frameworks.batch.artifacts import Producer, download_uri, input_path
    from tepui.master.http.files_proxy import task_files_request_scope
    from tepui.sdk.http_security import GuardedSite, HttpPolicy, task_files_token
    from tepui.sdk.protocol.values import CommandURI

    fetcher = Fetcher(None, str(tmp_path / "cache"), timeout=5.0)
    sandbox = tmp_path / "downstream"
    made = Producer(task_id=TID, agent_id=AID, framework_id=FID)

    def uri(output: str, credential: str | None, producer: Producer = made) -> CommandURI:
        return CommandURI(value=download_uri(master, producer, output, credential), extract=False,
                          output_file=input_path("map", 0, output))

    async def fetch_uris(reactor: Any, uris: list[CommandURI]) -> Any:
        return await threads.deferToThreadPool(reactor, reactor.getThreadPool(), fetcher.fetch_blocking, uris,
                                               str(sandbox))

    async def scenario(reactor: Any) -> None:
        nonlocal master
        agent_port = serve_agent(reactor, work_dir, tmp_path)
        url = f"http://127.0.0.1:{agent_port}"
        endpoint = TasksEndpoint(reactor, lambda task_id, fid: [], token=TOKEN, agent={AID: ("a1", url)}.get)
        root = resource.Resource()
        root.putChild(b"tasks", endpoint)
        site = GuardedSite(root, HttpPolicy(token=TOKEN, read_auth="token"), request_scope=task_files_request_scope,
                           reactor=reactor)
        master = f"http://127.0.0.1:{reactor.listenTCP(0, site, interface='127.0.0.1').getHost().port}"
        token = task_files_token(TOKEN, FID, TID)
        try:
            results = await fetch_uris(reactor, [uri("count.txt", token), uri("out/big.bin", token)])
            assert [r.path for r in results] == [str(sandbox / "map/0/count.txt"), str(sandbox / "map/0/out/big.bin")]
            assert (sandbox / "map/0/count.txt").read_text() == "42\n"
            assert (sandbox / "map/0/out/big.bin").read_bytes() == BIG
            for credential, producer in ((None, made), ("not-the-token", made),
                                         (task_files_token(TOKEN, FID, "other.0.1"), made),
                                         (token, Producer(task_id="other.0.1", agent_id=AID, framework_id=FID))):
                with pytest.raises(FetchError, match="the server answered HTTP 401"):
                    await fetch_uris(reactor, [uri("count.txt", credential, producer)])
            with pytest.raises(FetchError, match="the server answered HTTP 400"):  # the agent: a directory
                await fetch_uris(reactor, [uri("out/dir", token)])
        finally:
            await stop_listening(reactor)
            reactor.getThreadPool().stop()

    master = ""
    run(scenario, timeout=30.0)


def test_a_reader_that_leaves_mid_download_leaves_no_open_file_behind(work_dir: Path, tmp_path: Path) -> None:
    """The client aborts after the first bytes: whatever the master and the agent had under way
    ends without leaving the file open (no descriptor of it remains), and the next download works."""
    from twisted.internet import defer, protocol

    def open_big() -> list[str]:
        names = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue
        return [name for name in names if name.endswith("big.bin")]

    class LeaveEarly(protocol.Protocol):
        def __init__(self) -> None:
            self.got = 0
            self.ended: defer.Deferred[None] = defer.Deferred()

        def dataReceived(self, data: bytes) -> None:
            self.got += len(data)
            self.transport.stopProducing()  # type: ignore[union-attr]  # the response body's producer

        def connectionLost(self, reason: Any = None) -> None:
            self.ended.callback(None)

    async def scenario(reactor: Any) -> None:
        agent_port = serve_agent(reactor, work_dir, tmp_path)
        master = serve_master(reactor, agent_port, known=True)
        try:
            response = await Agent(reactor).request(b"GET", f"{master}/{TID}/files/download?path=out%2Fbig.bin".encode())
            reader = LeaveEarly()
            response.deliverBody(reader)
            await reader.ended
            assert 0 < reader.got < len(BIG)
            for _ in range(50):
                if not open_big():
                    break
                await deferLater(reactor, 0.05)
            assert open_big() == []
            code, _, body = await fetch(reactor, f"{master}/{TID}/files/download?path=out%2Fbig.bin")
            assert (code, body == BIG) == (200, True)
            assert open_big() == []
        finally:
            await stop_listening(reactor)

    def deferLater(reactor: Any, seconds: float) -> Any:
        from twisted.internet import task

        return task.deferLater(reactor, seconds, lambda: None)

    run(scenario)
