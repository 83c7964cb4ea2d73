"""ZooKeeperStore against the real ZooKeeper at TEPUI_TEST_ZK (scripts/test starts one): the Store
contract itself runs on it from tests/sdk/test_store.py (parametrized over both stores); this file
tests what only ZooKeeper has — key escaping, fencing between two clients, multis cut at 512 KiB,
connection trouble. Every test works under its own /tepui-test/<uuid> root, deleted afterwards."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KeeperState
from kazoo.exceptions import ConnectionLoss
from kazoo.security import make_digest_acl
from tepui.master.durability.epoch import Superseded, check_epoch, claim_epoch, stored_epoch
from tepui.sdk.store import Entry, Store, StoreError, VersionConflict, get_json, put_json
from tepui.sdk.zk_store import MAX_VALUE_BYTES, MULTI_LIMIT_BYTES, ZooKeeperStore, escape_name, unescape_name
from tests.zookeeper_access import delete_tree, zk_client, zk_hosts, zk_store

pytestmark = pytest.mark.slow


@pytest.fixture
def client() -> Iterator[KazooClient]:
    with zk_client() as c:
        yield c


@pytest.fixture
def store(client: KazooClient) -> Iterator[ZooKeeperStore]:
    with zk_store(client) as s:
        yield s


def test_it_satisfies_the_protocol_and_versions_are_znode_versions_plus_one(
    store: ZooKeeperStore, client: KazooClient
) -> None:
    assert isinstance(store, Store)
    assert [store.put("agents", "a1", bytes([i])) for i in range(3)] == [1, 2, 3]
    data, stat = client.get(f"{store.root}/agents/a1")
    assert (data, stat.version) == (b"\x02", 2)
    assert store.delete("agents", "a1") is True
    assert client.exists(f"{store.root}/agents/a1") is None
    assert store.put("agents", "a1", b"again") == 1  # a deleted key forgets its version
    assert store.get("agents", "a1") == Entry(b"again", 1)


ODD_KEYS = [".", "..", "%", "%2E", "a/b", "/", "//x/", "a.b", "é", "😀", "\x01\x1f\x7f\x9f", "\ue000\ufff0",
            "zookeeper", "k" * 1024, "😀" * 1024]


def test_any_valid_key_is_one_znode_and_comes_back_in_key_order(store: ZooKeeperStore, client: KazooClient) -> None:
    for key in ODD_KEYS:
        assert store.put("odd/ns.", key, key.encode()) == 1
    listed = store.list("odd/ns.")
    assert list(listed) == sorted(ODD_KEYS)
    assert listed == {key: Entry(key.encode(), 1) for key in sorted(ODD_KEYS)}
    assert store.list("odd/ns.", "%") == {"%": Entry(b"%", 1), "%2E": Entry(b"%2E", 1)}
    assert store.list("odd/ns.", "/") == {"/": Entry(b"/", 1), "//x/": Entry(b"//x/", 1)}
    assert store.get("odd/ns.", "😀" * 1024) == Entry(("😀" * 1024).encode(), 1)
    # one child per key, under one escaped namespace znode
    assert client.get_children(store.root) == ["odd%2Fns."]
    assert sorted(client.get_children(f"{store.root}/odd%2Fns.")) == sorted(map(escape_name, ODD_KEYS))
    assert [escape_name(k) for k in (".", "..", "%", "a/b", "😀")] == ["%2E", "%2E%2E", "%25", "a%2Fb", "%F0%9F%98%80"]
    assert all(unescape_name(escape_name(k)) == k for k in ODD_KEYS)


def test_compare_and_set_is_zookeepers_version_check_across_clients(store: ZooKeeperStore) -> None:
    with zk_client() as other_client:
        other = ZooKeeperStore(other_client, store.root)
        assert store.put("fw", "f1", b"v1", expected_version=0) == 1
        with pytest.raises(VersionConflict) as err:
            other.put("fw", "f1", b"also new", expected_version=0)
        assert (err.value.ns, err.value.key, err.value.expected, err.value.actual) == ("fw", "f1", 0, 1)
        assert other.put("fw", "f1", b"v2", expected_version=1) == 2
        with pytest.raises(VersionConflict) as err:
            store.put("fw", "f1", b"stale", expected_version=1)
        assert (err.value.expected, err.value.actual) == (1, 2)
        with pytest.raises(VersionConflict) as err:
            store.delete("fw", "f1", expected_version=1)
        assert (err.value.expected, err.value.actual) == (1, 2)
        with pytest.raises(VersionConflict) as err:
            store.delete("fw", "nobody", expected_version=1)
        assert (err.value.expected, err.value.actual) == (1, 0)
        assert store.get("fw", "f1") == Entry(b"v2", 2)


def test_a_transactions_reads_are_validated_at_commit(store: ZooKeeperStore) -> None:
    """No read lock in ZooKeeper: a key read inside a transaction and changed by another client
    before the commit fails the commit, and nothing of the transaction is written."""
    store.put("fw", "read", b"v1")
    with zk_client() as other_client:
        other = ZooKeeperStore(other_client, store.root)
        with pytest.raises(VersionConflict) as err, store.transaction():
            assert store.get("fw", "read") == Entry(b"v1", 1)
            other.put("fw", "read", b"v2")
            store.put("fw", "written", b"w")
        assert (err.value.key, err.value.expected, err.value.actual) == ("read", 1, 2)
        assert store.get("fw", "written") is None

        # a key read as absent: another client creating it fails the commit too
        with pytest.raises(VersionConflict) as err, store.transaction():
            assert store.get("fw", "absent") is None
            other.put("fw", "absent", b"now here")
            store.put("fw", "written", b"w")
        assert (err.value.key, err.value.expected, err.value.actual) == ("absent", 0, 1)
        assert store.get("fw", "written") is None

        # an unconditional put checks the version the transaction saw too
        with pytest.raises(VersionConflict), store.transaction():
            store.put("fw", "read", b"mine")
            other.put("fw", "read", b"theirs")
        assert store.get("fw", "read") == Entry(b"theirs", 3)

        # unchallenged, the same shape commits (and the absent-check leaves no znode behind)
        with store.transaction():
            assert store.get("fw", "gone") is None
            store.put("fw", "written", b"w")
        assert store.list("fw") == {"absent": Entry(b"now here", 1), "read": Entry(b"theirs", 3),
                                    "written": Entry(b"w", 1)}


def test_claim_epoch_and_check_epoch_fence_two_masters(store: ZooKeeperStore) -> None:
    """master/durability/epoch.py on two stores on two clients, as two masters in HA mode."""
    with zk_client() as other_client:
        old, new = store, ZooKeeperStore(other_client, store.root)
        first = claim_epoch(old, now_ms=1000)
        assert first == 1000
        check_epoch(old, first)
        second = claim_epoch(new, now_ms=1000)
        assert second == 1001  # strictly above the stored one, even with the same clock
        with pytest.raises(Superseded) as err:  # the old master's next write transaction
            with old.transaction():
                check_epoch(old, first)
                old.put("agents", "a1", b"stale")
        assert (err.value.stored, err.value.own) == (1001, 1000)
        assert old.get("agents", "a1") is None

        # the check passes in the new master's view, a third master claims the registry before the
        # commit: the commit fails on the epoch's version and writes nothing
        with pytest.raises(VersionConflict) as conflict, new.transaction():
            check_epoch(new, second)
            assert claim_epoch(old, now_ms=1000) == 1002
            new.put("agents", "a1", b"stale")
        assert (conflict.value.key, conflict.value.expected, conflict.value.actual) == ("epoch", 2, 3)
        assert new.get("agents", "a1") is None

        # two claims racing (claim_epoch's read and CAS put, by hand): the later commit loses
        with pytest.raises(VersionConflict), new.transaction():
            assert get_json(new, "master", "epoch", int) == (1002, 3)
            assert claim_epoch(old, now_ms=1000) == 1003
            put_json(new, "master", "epoch", 1003, expected_version=3)
        assert stored_epoch(new) == 1003


def test_a_transaction_that_raises_writes_nothing(store: ZooKeeperStore, client: KazooClient) -> None:
    store.put("reservations", "r0", b"kept")
    with pytest.raises(RuntimeError, match="midway"), store.transaction():
        store.put("reservations", "r1", b"a")
        store.delete("reservations", "r0")
        assert store.list("reservations") == {"r1": Entry(b"a", 1)}  # the transaction's own view
        raise RuntimeError("midway")
    assert store.list("reservations") == {"r0": Entry(b"kept", 1)}
    assert client.get_children(f"{store.root}/reservations") == ["r0"]


def test_a_namespace_is_ensured_once_and_made_again_if_deleted_by_hand(
    store: ZooKeeperStore, client: KazooClient
) -> None:
    """A transaction ensures only the namespaces it creates in, once per store (the master's
    per-agent transactions paid two extra round trips for it); one deleted behind the store's
    back is made again and the transaction goes through."""
    ensured: list[str] = []
    real = client.ensure_path_async

    def spy(path: str, *args: Any, **kwargs: Any) -> Any:
        if path.startswith(f"{store.root}/"):  # kazoo recurses for the parents too
            ensured.append(path)
        return real(path, *args, **kwargs)

    client.ensure_path_async = spy  # type: ignore[method-assign]  # counting the round trips
    try:
        for i in range(3):
            with store.transaction():
                store.get("epoch", "master")  # a validated read of an absent key
                store.put("agents", f"a{i}", b"x")
        assert ensured == [f"{store.root}/agents", f"{store.root}/epoch"]
        put_json(store, "epoch", "master", 7)
        with store.transaction():
            store.get("epoch", "master")  # present now: a check, needs no parent
            store.put("agents", "a0", b"y")
        assert len(ensured) == 2
        client.delete(f"{store.root}/agents", recursive=True)
        with store.transaction():
            store.put("agents", "b", b"z")
        assert store.list("agents") == {"b": Entry(b"z", 1)}
        assert ensured[2:] == [f"{store.root}/agents"]
    finally:
        client.ensure_path_async = real  # type: ignore[method-assign]


AGENT_RECORD = b"x" * 600  # about one registered agent in the master's registry


def test_a_transaction_over_the_multi_limit_commits_in_chunks(store: ZooKeeperStore) -> None:
    started = time.perf_counter()
    with store.transaction():
        for i in range(10_000):
            store.put("agents", f"agent-{i:05}", AGENT_RECORD + str(i).encode())
    committed = time.perf_counter() - started
    assert 10_000 * (600 + 64) > 12 * MULTI_LIMIT_BYTES  # so it really took several multis
    started = time.perf_counter()
    listed = store.list("agents")
    listing = time.perf_counter() - started
    assert len(listed) == 10_000
    assert listed["agent-00000"] == Entry(AGENT_RECORD + b"0", 1)
    assert listed["agent-09999"] == Entry(AGENT_RECORD + b"9999", 1)
    assert list(listed) == [f"agent-{i:05}" for i in range(10_000)]
    assert store.list("agents", "agent-0999") == {
        f"agent-0999{i}": Entry(AGENT_RECORD + f"999{i}".encode(), 1) for i in range(10)
    }
    print(f"10,000 x 600 B: transaction {committed:.2f} s, list() {listing:.2f} s")


def test_a_value_over_the_limit_is_a_value_error_naming_its_size(store: ZooKeeperStore) -> None:
    assert store.put("big", "fits", b"x" * MAX_VALUE_BYTES) == 1
    with pytest.raises(ValueError, match=f"is {MAX_VALUE_BYTES + 1} bytes.*at most {MAX_VALUE_BYTES}"):
        store.put("big", "too-big", b"x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(ValueError, match="458753 bytes"), store.transaction():
        store.put("big", "other", b"small")
        store.put("big", "too-big", b"x" * (MAX_VALUE_BYTES + 1))
    assert store.list("big") == {"fits": Entry(b"x" * MAX_VALUE_BYTES, 1)}
    with store.transaction():  # two big values: two multis
        store.put("big", "a", b"a" * MAX_VALUE_BYTES)
        store.put("big", "b", b"b" * MAX_VALUE_BYTES)
    assert [e.value[:1] for e in store.list("big").values()] == [b"a", b"b", b"x"]


def test_a_closed_store_or_a_stopped_client_is_a_store_error_naming_znode_and_operation() -> None:
    with zk_client() as client, zk_store(client) as store:
        store.put("agents", "a1", b"x")
        store.close()
        store.close()  # idempotent
        with pytest.raises(StoreError, match=f"could not get agents/a1 \\(znode {store.root}/agents/a1\\).*closed"):
            store.get("agents", "a1")
        assert client.connected  # closing the store leaves the client to its owner
        stopped_store = ZooKeeperStore(client, store.root)
    with pytest.raises(StoreError, match=f"could not put agents/a2 \\(znode {stopped_store.root}/agents/a2\\).*stopped"):
        stopped_store.put("agents", "a2", b"y")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_connection_that_stays_down_is_a_store_error_after_retry_seconds() -> None:
    zk_hosts()
    client = KazooClient(hosts=f"127.0.0.1:{free_port()}", timeout=4.0)  # nothing listens there
    client.start_async()
    # Until its connection thread runs, a started client is still CLOSED and kazoo fails every
    # request with ConnectionClosedError — "stopped", to the store. Under load that thread can
    # start late (this test failed 4 runs in 6 beside a busy suite), so wait for CONNECTING:
    # the state a client whose ensemble is down stays in.
    deadline = time.monotonic() + 10
    while client._state == KeeperState.CLOSED and time.monotonic() < deadline:  # kazoo keeps it private
        time.sleep(0.01)
    assert client._state == KeeperState.CONNECTING
    try:
        store = ZooKeeperStore(client, "/tepui-test/unreachable", retry_seconds=0.6)
        started = time.monotonic()
        with pytest.raises(StoreError, match="could not get agents/a1 \\(znode /tepui-test/unreachable/agents/a1\\)"
                           ": no answer from ZooKeeper within 0.6 s"):
            store.get("agents", "a1")
        waited = time.monotonic() - started
        assert 0.55 <= waited < 5.0, waited  # not before retry_seconds; the bound above only catches a hang
        with pytest.raises(StoreError, match="within 0.6 s"), store.transaction():
            store.put("agents", "a1", b"x")
    finally:
        client.stop()
        client.close()
    assert ZooKeeperStore(client, "/x").retry_seconds == 4.0  # default: the session timeout


class CuttableProxy:
    """A TCP relay to ZooKeeper that a test can cut (every link closed, new ones refused) and
    restore on the same port: a network outage for one client, the server untouched."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self._links: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the blocked accept() and stops listening (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for link in self._links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()
        self._links.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                inbound, _ = listener.accept()
            except OSError:
                return
            outbound = socket.create_connection(self.target)
            self._links += [inbound, outbound]
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)


def test_calls_during_a_short_outage_are_retried_and_succeed_on_the_same_session() -> None:
    host, port = zk_hosts().split(",")[0].rsplit(":", 1)
    proxy = CuttableProxy((host, int(port)))
    client = KazooClient(hosts=f"127.0.0.1:{proxy.port}", timeout=4.0)
    client.start(timeout=15)
    try:
        with zk_store(client, retry_seconds=3.0) as store:
            assert store.put("agents", "a1", b"before") == 1
            session = client.client_id
            proxy.cut()
            threading.Timer(1.0, proxy.restore).start()
            started = time.monotonic()
            assert store.put("agents", "a1", b"during") == 2  # SUSPENDED, retried until the link is back
            waited = time.monotonic() - started
            assert 0.9 <= waited < 3.0, waited
            assert client.client_id == session  # the same session: nothing was lost
            assert store.get("agents", "a1") == Entry(b"during", 2)
            print(f"put during a 1 s outage returned after {waited:.2f} s")

            store.retry_seconds = 1.0
            proxy.cut()
            started = time.monotonic()
            with pytest.raises(StoreError, match="could not list agents/\\* .*no answer from ZooKeeper within 1 s"):
                store.list("agents")
            assert 0.9 <= time.monotonic() - started < 2.5
            proxy.restore()
            store.retry_seconds = 10.0
            assert store.list("agents") == {"a1": Entry(b"during", 2)}
    finally:
        client.stop()
        client.close()
        proxy.cut()


def test_anything_else_is_a_store_error_at_once_naming_znode_and_operation(
    store: ZooKeeperStore, client: KazooClient
) -> None:
    locked = make_digest_acl("someone-else", "secret", all=True)
    client.ensure_path(store.root)
    client.create(f"{store.root}/locked", acl=[locked])
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"could not put locked/k \\(znode {store.root}/locked/k\\): NoAuthError"):
        store.put("locked", "k", b"x")
    assert time.monotonic() - started < 0.5  # not retried
    client.delete(f"{store.root}/locked")  # a childless znode needs no rights of its own to delete


def test_a_failure_after_the_first_multi_says_the_first_ones_were_committed(store: ZooKeeperStore) -> None:
    store.put("agents", "last", b"v1")
    with zk_client() as other_client:
        other = ZooKeeperStore(other_client, store.root)
        with pytest.raises(StoreError, match="The first 1 of this transaction's 2 multis were committed") as err:
            with store.transaction():
                for i in range(700):  # 700 x 725 B (value, path, op overhead) = 507,500 B: one multi
                    store.put("agents", f"agent-{i:03}", AGENT_RECORD)
                store.put("agents", "last", b"m" * 100_000)  # does not fit in it: the second multi
                other.put("agents", "last", b"theirs")
        assert not isinstance(err.value, VersionConflict)
        assert "Version conflict on agents/'last': expected it at version 1, but it is at version 2" in str(err.value)
    assert len(store.list("agents", "agent-")) == 700
    assert store.get("agents", "last") == Entry(b"theirs", 2)


def test_a_foreign_child_name_is_a_store_error(store: ZooKeeperStore, client: KazooClient) -> None:
    store.put("agents", "a1", b"x")
    client.create(f"{store.root}/agents/%FF")  # not UTF-8 once unescaped: no key maps to it
    with pytest.raises(StoreError, match=f"could not list its children \\(znode {store.root}/agents\\)"):
        store.list("agents")


def test_a_multi_whose_answer_was_lost_is_not_resent_if_it_was_applied(
    store: ZooKeeperStore, client: KazooClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ConnectionLoss after ZooKeeper applied the multi (its server died before answering): the
    retry finds the writes in place instead of failing on their own version checks."""
    store.put("agents", "a1", b"v1")
    store.put("agents", "gone", b"x")
    real_transaction, sent, answers_to_lose = client.transaction, [], [1]

    def losing_the_first_answer() -> Any:
        multi = real_transaction()
        really_commit = multi.commit_async

        def commit_async() -> Any:
            answer = really_commit()
            sent.append(answer.get())
            if not answers_to_lose:
                return answer
            answers_to_lose.pop()
            lost = client.handler.async_result()
            lost.set_exception(ConnectionLoss())
            return lost

        multi.commit_async = commit_async
        return multi

    monkeypatch.setattr(client, "transaction", losing_the_first_answer)
    with store.transaction():
        store.put("agents", "a1", b"v2")
        store.put("agents", "a2", b"new")
        store.put("agents", "a2", b"newer")
        store.delete("agents", "gone")
    assert len(sent) == 1  # applied once, not resent
    assert store.list("agents") == {"a1": Entry(b"v2", 2), "a2": Entry(b"newer", 2)}

    # not applied (it conflicted, and that answer was lost): resent, and the conflict reported
    sent.clear()
    answers_to_lose.append(1)
    with zk_client() as other_client:
        with pytest.raises(VersionConflict) as err, store.transaction():
            store.put("agents", "a2", b"mine")
            store.put("agents", "a1", b"mine", expected_version=2)
            ZooKeeperStore(other_client, store.root).put("agents", "a1", b"theirs")
    assert len(sent) == 2
    assert (err.value.key, err.value.expected, err.value.actual) == ("a1", 2, 3)
    assert store.list("agents") == {"a1": Entry(b"theirs", 3), "a2": Entry(b"newer", 2)}
