"""The state store (DESIGN §6): versioned, compare-and-set, transactional, durable on return, and
loud — every storage failure is a StoreError naming the file, so the master can exit on it."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tepui.sdk import SQLiteStore, Store, StoreError
from tepui.sdk.store import MAX_NAME_CHARS, Entry, VersionConflict, get_json, put_json

from tests.zookeeper_access import zk_store


# The contract tests run on every Store: SQLite, and ZooKeeper when TEPUI_TEST_ZK names one
# (skipped otherwise; tests/sdk/test_zk_store.py has what only ZooKeeper does).
STORES = ["sqlite", pytest.param("zookeeper", marks=pytest.mark.slow)]


@contextlib.contextmanager
def open_store(kind: str, directory: Path) -> Iterator[Store]:
    if kind == "sqlite":
        with SQLiteStore(directory / "state" / "registry.db") as s:
            yield s
    else:
        with zk_store() as s:
            yield s


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, tmp_path) as s:
        yield s


def test_each_store_satisfies_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


def test_put_get_list_delete_round_trip(store: Store) -> None:
    assert store.get("agents", "a1") is None
    assert store.put("agents", "a1", b"one") == 1
    assert store.put("agents", "a2", b"two") == 1
    assert store.put("agents-gone", "a3", b"three") == 1
    assert store.put("frameworks", "a1", b"not an agent") == 1

    assert store.get("agents", "a1") == Entry(b"one", 1)
    assert store.list("agents") == {"a1": Entry(b"one", 1), "a2": Entry(b"two", 1)}
    assert store.list("agents-gone") == {"a3": Entry(b"three", 1)}
    assert store.list("nobody") == {}

    assert store.delete("agents", "a1") is True
    assert store.delete("agents", "a1") is False
    assert store.get("agents", "a1") is None
    assert store.get("frameworks", "a1") == Entry(b"not an agent", 1)


def test_list_by_prefix_is_exact_and_ordered(store: Store) -> None:
    for key in ["app/b", "app/a", "App/c", "apple", "ap%", "a_p/x"]:
        store.put("apps", key, key.encode())
    assert list(store.list("apps", "app/")) == ["app/a", "app/b"]
    assert list(store.list("apps", "app")) == ["app/a", "app/b", "apple"]
    assert list(store.list("apps", "ap%")) == ["ap%"]  # no LIKE wildcards
    assert list(store.list("apps", "a_")) == ["a_p/x"]
    assert list(store.list("apps")) == sorted(["app/b", "app/a", "App/c", "apple", "ap%", "a_p/x"])


def test_versions_increase_and_restart_after_delete(store: Store) -> None:
    assert [store.put("quotas", "dev", bytes([i])) for i in range(4)] == [1, 2, 3, 4]
    assert store.get("quotas", "dev") == Entry(b"\x03", 4)
    store.delete("quotas", "dev")
    assert store.put("quotas", "dev", b"again") == 1  # like ZooKeeper: a re-created key starts over


def test_compare_and_set(store: Store) -> None:
    assert store.put("fw", "f1", b"v1", expected_version=0) == 1
    assert store.put("fw", "f1", b"v2", expected_version=1) == 2

    with pytest.raises(VersionConflict) as stale:
        store.put("fw", "f1", b"stale", expected_version=1)
    assert (stale.value.ns, stale.value.key, stale.value.expected, stale.value.actual) == ("fw", "f1", 1, 2)
    assert "'f1'" in str(stale.value) and "version 1" in str(stale.value) and "version 2" in str(stale.value)
    assert isinstance(stale.value, StoreError)

    with pytest.raises(VersionConflict, match="expected it absent") as exists:
        store.put("fw", "f1", b"create", expected_version=0)
    assert exists.value.actual == 2

    with pytest.raises(VersionConflict, match="but it is absent"):
        store.put("fw", "nobody", b"x", expected_version=3)
    assert store.get("fw", "f1") == Entry(b"v2", 2)
    assert store.get("fw", "nobody") is None

    with pytest.raises(VersionConflict):
        store.delete("fw", "f1", expected_version=1)
    assert store.delete("fw", "f1", expected_version=2) is True
    assert store.delete("fw", "f1", expected_version=0) is False


def test_transaction_commits_a_batch(store: Store) -> None:
    store.put("weights", "old", b"x")
    with store.transaction():
        store.put("weights", "dev", b"2.0", expected_version=0)
        store.put("weights", "prod", b"3.0")
        store.delete("weights", "old", expected_version=1)
        assert store.get("weights", "dev") == Entry(b"2.0", 1)  # a transaction sees its own writes
    assert store.list("weights") == {"dev": Entry(b"2.0", 1), "prod": Entry(b"3.0", 1)}


def test_transaction_that_raises_midway_writes_nothing(store: Store) -> None:
    store.put("reservations", "r0", b"kept")
    with pytest.raises(RuntimeError, match="midway"), store.transaction():
        store.put("reservations", "r1", b"a")
        store.delete("reservations", "r0")
        raise RuntimeError("midway")
    assert store.list("reservations") == {"r0": Entry(b"kept", 1)}

    with pytest.raises(VersionConflict), store.transaction():
        store.put("reservations", "r2", b"b")
        store.put("reservations", "r0", b"stale", expected_version=7)
    assert store.list("reservations") == {"r0": Entry(b"kept", 1)}

    with store.transaction(), pytest.raises(RuntimeError, match="nest"), store.transaction():
        pass


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "reg.db"
    store = SQLiteStore(path)
    store.put("agents", "a1", b"admitted")
    with store.transaction():
        store.put("agents", "a2", b"unreachable")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.get("agents", "a1")

    with SQLiteStore(path) as reopened:
        assert reopened.list("agents") == {"a1": Entry(b"admitted", 1), "a2": Entry(b"unreachable", 1)}
        assert reopened.put("agents", "a1", b"gone") == 2


def test_second_store_on_the_same_file_sees_committed_data(tmp_path: Path) -> None:
    path = tmp_path / "reg.db"
    with SQLiteStore(path) as writer, SQLiteStore(path) as reader:
        writer.put("fw", "f1", b"v1")
        assert reader.get("fw", "f1") == Entry(b"v1", 1)
        with writer.transaction():
            writer.put("fw", "f2", b"v2")
            assert reader.get("fw", "f2") is None  # not committed yet; WAL readers don't block
        assert reader.get("fw", "f2") == Entry(b"v2", 1)
        with pytest.raises(VersionConflict):  # CAS holds across store instances
            reader.put("fw", "f1", b"stale", expected_version=0)


def test_wal_mode_and_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "state" / "master" / "reg.db"
    SQLiteStore(path).close()
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in conn.execute("PRAGMA table_info(entries)")]
        assert columns == ["ns", "key", "value", "version", "updated"]
    finally:
        conn.close()


def test_store_under_a_regular_file_raises_store_error_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    path = blocker / "reg.db"
    with pytest.raises(StoreError, match="could not be opened") as err:
        SQLiteStore(path)
    assert str(path) in str(err.value)


def test_store_whose_directory_is_gone_raises_store_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = state / "reg.db"
    with SQLiteStore(path) as store:
        store.put("agents", "a1", b"x")
    for child in state.iterdir():
        child.unlink()
    state.rmdir()
    state.write_bytes(b"the state dir was replaced by a file")  # fails even for root
    with pytest.raises(StoreError) as err:
        SQLiteStore(path)
    assert str(path) in str(err.value)


def test_a_write_that_cannot_get_the_lock_raises_store_error(tmp_path: Path) -> None:
    """Two writers on one file (a deployment error): the loser gets a StoreError, not a hang."""
    path = tmp_path / "reg.db"
    with SQLiteStore(path) as holder, SQLiteStore(path, busy_timeout=0.05) as loser:
        with holder.transaction():
            holder.put("agents", "a1", b"held")
            with pytest.raises(StoreError, match="could not put agents/a2") as err:
                loser.put("agents", "a2", b"blocked")
            assert str(path) in str(err.value)
            assert not isinstance(err.value, VersionConflict)
        assert loser.get("agents", "a1") == Entry(b"held", 1)
        assert loser.get("agents", "a2") is None


@pytest.mark.parametrize(
    ("ns", "key", "problem"),
    [
        ("", "k", "namespace must not be empty"),
        ("ns", "", "key must not be empty"),
        (b"ns", "k", "namespace must be a str, not bytes"),
        ("ns", 7, "key must be a str, not int"),
        ("n\x00s", "k", "NUL"),
        ("ns", "k\x00", "NUL"),
        ("ns", "k" * (MAX_NAME_CHARS + 1), "the limit is 1024"),
        ("ns", "\ud800", "lone surrogate"),
    ],
)
def test_bad_names_raise_value_error(store: Store, ns: object, key: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        store.put(ns, key, b"v")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=problem):
        store.get(ns, key)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=problem):
        store.delete(ns, key)  # type: ignore[arg-type]


def test_bad_values_and_versions_raise_value_error(store: Store) -> None:
    assert store.put("ns", "k" * MAX_NAME_CHARS, b"") == 1  # the limit itself is fine
    with pytest.raises(ValueError, match="value must be bytes, not str"):
        store.put("ns", "k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value must be bytes, not bytearray"):
        store.put("ns", "k", bytearray(b"x"))  # type: ignore[arg-type]
    for bad in (-1, True, 1.0, "1"):
        with pytest.raises(ValueError, match="expected_version"):
            store.put("ns", "k", b"x", expected_version=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix"):
        store.list("ns", "p\x00")
    assert store.get("ns", "k") is None


class FrameworkRecord(msgspec.Struct, frozen=True):
    id: str
    role: str
    failover_timeout: float


def test_json_helpers_store_typed_structs(store: Store) -> None:
    record = FrameworkRecord("fw-1", "dev", 604800.0)
    assert put_json(store, "frameworks", record.id, record, expected_version=0) == 1
    assert get_json(store, "frameworks", "fw-1", FrameworkRecord) == (record, 1)
    assert get_json(store, "frameworks", "fw-1") == (
        {"id": "fw-1", "role": "dev", "failover_timeout": 604800.0},
        1,
    )
    assert get_json(store, "frameworks", "nobody", FrameworkRecord) is None
    with pytest.raises(VersionConflict):
        put_json(store, "frameworks", record.id, record, expected_version=0)

    store.put("frameworks", "broken", b'{"id": 3}')
    with pytest.raises(StoreError, match="broken"):
        get_json(store, "frameworks", "broken", FrameworkRecord)
    with pytest.raises(ValueError, match="as JSON"):
        put_json(store, "frameworks", "odd", object())


# -- model-based: random put/delete/CAS sequences against a dict ------------------------------

KEYS = st.sampled_from(["a", "b", "c", "a/b", "é"])
EXPECTED = st.one_of(st.none(), st.integers(min_value=0, max_value=4))
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, st.binary(max_size=8), EXPECTED),
        st.tuples(st.just("delete"), KEYS, st.none(), EXPECTED),
        st.tuples(st.just("abort"), KEYS, st.binary(max_size=8), st.none()),
    ),
    max_size=25,
)


@pytest.fixture(scope="module", params=STORES)
def shared_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as d, open_store(request.param, Path(d)) as s:
        yield s


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_store_matches_a_dict_model(shared_store: Store, ops: list[tuple]) -> None:
    store, ns = shared_store, uuid.uuid4().hex  # a fresh namespace per example
    model: dict[str, tuple[bytes, int]] = {}
    for op, key, value, expected in ops:
        current = model[key][1] if key in model else 0
        if op == "abort":  # a transaction that fails midway changes nothing
            with pytest.raises(RuntimeError), store.transaction():
                store.put(ns, key, value)
                raise RuntimeError
        elif expected is not None and expected != current:
            with pytest.raises(VersionConflict) as err:
                if op == "put":
                    store.put(ns, key, value, expected_version=expected)
                else:
                    store.delete(ns, key, expected_version=expected)
            assert (err.value.expected, err.value.actual) == (expected, current)
        elif op == "put":
            assert store.put(ns, key, value, expected_version=expected) == current + 1
            model[key] = (value, current + 1)
        else:
            assert store.delete(ns, key, expected_version=expected) is (key in model)
            model.pop(key, None)
        for k in ("a", "é"):
            assert store.get(ns, k) == (Entry(*model[k]) if k in model else None)
    assert store.list(ns) == {k: Entry(*model[k]) for k in sorted(model)}
    assert store.list(ns, "a") == {k: Entry(*model[k]) for k in sorted(model) if k.startswith("a")}
