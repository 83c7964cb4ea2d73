"""Access to the real ZooKeeper tests use (TEPUI_TEST_ZK, the standalone server scripts/test
starts): its address, a started client, a ZooKeeperStore under a fresh root deleted afterwards.
Shared by the store, leadership, follower and CLI lookup tests."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from tepui.sdk.zk_store import ZooKeeperStore


def zk_hosts() -> str:
    hosts = os.environ.get("TEPUI_TEST_ZK")
    if not hosts:
        pytest.skip("TEPUI_TEST_ZK is not set: no ZooKeeper to test against (scripts/test starts one)")
    return hosts


@contextlib.contextmanager
def zk_client(timeout: float = 4.0) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zk_hosts(), timeout=timeout)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@contextlib.contextmanager
def zk_store(client: KazooClient | None = None, **kwargs: float) -> Iterator[ZooKeeperStore]:
    """A store under a fresh /tepui-test/<uuid> root, deleted afterwards (used by test_store.py)."""
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(zk_client())
        root = f"/tepui-test/{uuid.uuid4().hex}"
        store = ZooKeeperStore(client, root, **kwargs)
        try:
            yield store
        finally:
            store.close()
            delete_tree(client, root)


def delete_tree(client: KazooClient, root: str) -> None:
    """kazoo's recursive delete goes one znode at a time (13 s for 10,000 on a loaded machine);
    this deletes each namespace's children pipelined."""
    if client.exists(root) is None:
        return
    for ns in client.get_children(root):
        ns_path = f"{root}/{ns}"
        pending = [client.delete_async(f"{ns_path}/{key}") for key in client.get_children(ns_path)]
        for result in pending:
            result.get(timeout=30)
    client.delete(root, recursive=True)
