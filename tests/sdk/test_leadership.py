"""sdk/leadership.py against the real ZooKeeper at TEPUI_TEST_ZK (scripts/test starts one): the
lowest ``json.info_`` node leads, only its successor wakes when it goes, followers move only to a
leader that has published its epoch, and a leader that loses its session — or stays suspended
past the safety window — is told so exactly once.

Callbacks reach the test through :class:`ThreadReactor`: ``callFromThread`` queues them (as the
real reactor does) and ``pump`` runs them on the test's thread; ``callLater`` is a fake clock."""

from __future__ import annotations

import queue
import time
import uuid
from typing import Any, Callable, Iterator

import pytest
from twisted.internet.task import Clock

from tepui.sdk.leadership import Contender, LeaderFollower, LeaderInfo, contenders, serving_leader
from tepui.sdk.zookeeper import connect
from tests.zookeeper_access import zk_hosts


class ThreadReactor(Clock):
    """``callFromThread`` from kazoo's threads, run by :meth:`pump` on the test's thread."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802 - Twisted's name
        self.queued.put((f, args))

    def pump(self, until: Callable[[], bool], seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {seconds} s")
            try:
                f, args = self.queued.get(timeout=0.05)
            except queue.Empty:
                continue
            f(*args)

    def settle(self, seconds: float) -> None:
        """Runs whatever arrives for ``seconds`` (to show that nothing more happens)."""
        deadline = time.monotonic() + seconds
        self.pump(lambda: time.monotonic() > deadline, seconds + 1)


@pytest.fixture(name="zk_hosts")
def zk_hosts_fixture() -> str:
    return zk_hosts()


@pytest.fixture
def clients(zk_hosts: str) -> Iterator[Callable[[], Any]]:
    made: list[Any] = []

    def make() -> Any:
        client = connect(f"zk://{zk_hosts}/tepui-test", session_timeout=2.0)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()
        client.close()


@pytest.fixture
def path(clients: Callable[[], Any]) -> Iterator[str]:
    root = f"/tepui-test/leadership-{uuid.uuid4().hex}"
    yield f"{root}/masters"
    cleaner = clients()
    cleaner.delete(root, recursive=True)


class Seen:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, *event: Any) -> None:
        self.events.append(event)


def contender(reactor: ThreadReactor, client: Any, path: str, name: str, seen: Seen, **kwargs: Any) -> Contender:
    return Contender(reactor, client, path, LeaderInfo(id=name, address=f"{name}:5050"),
                     on_elected=lambda: seen("elected", name), on_lost=lambda why: seen("lost", name, why),
                     on_suspended=lambda: seen("suspended", name), on_resumed=lambda: seen("resumed", name),
                     **kwargs)


def test_contenders_are_ordered_by_sequence_and_other_children_ignored() -> None:
    assert contenders(["json.info_0000000010", "json.info_0000000002", "lock", "json.info_x",
                       "json.info_0000000100"]) == ["json.info_0000000002", "json.info_0000000010",
                                                    "json.info_0000000100"]


def test_the_first_contender_leads_and_followers_move_only_once_it_publishes(clients: Any, path: str) -> None:
    reactor, seen, followed = ThreadReactor(), Seen(), Seen()
    first = contender(reactor, clients(), path, "m1", seen)
    first.start()
    reactor.pump(lambda: ("elected", "m1") in seen.events)
    second = contender(reactor, clients(), path, "m2", seen)
    second.start()
    follower_client = clients()
    follower = LeaderFollower(reactor, follower_client, path, lambda info: followed(info.id, info.epoch))
    follower.start()
    reactor.settle(0.5)
    assert followed.events == []  # elected is not serving: nothing to follow yet
    assert serving_leader(follower_client, path) is None

    first.publish(LeaderInfo(id="m1", address="m1:5050", epoch=7))
    reactor.pump(lambda: followed.events == [("m1", 7)])
    assert serving_leader(follower_client, path) == LeaderInfo(id="m1", address="m1:5050", epoch=7)
    reactor.pump(lambda: second.leader is not None)
    assert second.leader == LeaderInfo(id="m1", address="m1:5050", epoch=7)  # a standby redirects there
    reactor.settle(0.3)
    assert seen.events == [("elected", "m1")]
    assert followed.events == [("m1", 7)]  # once per (id, epoch)
    follower.close()


def test_a_leaders_departure_elects_only_its_successor(clients: Any, path: str) -> None:
    reactor, seen, followed = ThreadReactor(), Seen(), Seen()
    members = []
    for name in ("m1", "m2", "m3"):
        member = contender(reactor, clients(), path, name, seen)
        member.start()
        reactor.pump(lambda member=member: member.node is not None)
        members.append(member)
    reactor.pump(lambda: ("elected", "m1") in seen.events)
    follower = LeaderFollower(reactor, clients(), path, lambda info: followed(info.id, info.epoch))
    follower.start()

    members[0].publish(LeaderInfo(id="m1", epoch=7))
    reactor.pump(lambda: ("m1", 7) in followed.events and follower.leader is not None)
    members[0].close()  # a graceful stop deletes the node: the successor takes over at once
    reactor.pump(lambda: ("elected", "m2") in seen.events)
    reactor.pump(lambda: follower.leader is None)  # no one serves until m2 publishes: no redirect to m1
    members[1].publish(LeaderInfo(id="m2", epoch=8))
    reactor.pump(lambda: ("m2", 8) in followed.events)
    reactor.settle(0.3)
    assert seen.events == [("elected", "m1"), ("elected", "m2")]
    assert followed.events == [("m1", 7), ("m2", 8)]
    assert follower.leader == LeaderInfo(id="m2", epoch=8)


def test_a_leader_whose_session_expires_is_told_it_lost_exactly_once(clients: Any, path: str,
                                                                      zk_hosts: str) -> None:
    from kazoo.client import KazooClient

    reactor, seen = ThreadReactor(), Seen()
    client = clients()
    leader = contender(reactor, client, path, "m1", seen)
    standby = contender(reactor, clients(), path, "m2", seen)
    leader.start()
    reactor.pump(lambda: ("elected", "m1") in seen.events)
    standby.start()
    reactor.pump(lambda: standby.node is not None)

    # ZooKeeper's own way to expire a session: a second client on the same session closes it.
    session_id, password = client.client_id
    twin = KazooClient(hosts=zk_hosts, client_id=(session_id, password))
    twin.start()
    twin.stop()
    twin.close()
    reactor.pump(lambda: any(event[0] == "lost" for event in seen.events))
    reactor.pump(lambda: ("elected", "m2") in seen.events)  # its node went with the session
    reactor.settle(0.3)
    # The server closes the dead session's connection: the leader pauses (SUSPENDED), then,
    # reconnecting, hears the session expired (LOST: it gives up, once). Meanwhile the standby
    # wins, its predecessor gone with the session — in any order relative to those two: the
    # order the epoch fencing exists for. (A leader that falls *silent* pauses before anyone can
    # win — tests/e2e/test_ha_masters.py — but a session closed outright ends both at once.)
    assert seen.events[0] == ("elected", "m1")
    assert sorted(seen.events[1:]) == [("elected", "m2"), ("lost", "m1", "the ZooKeeper session expired"),
                                       ("suspended", "m1")]
    assert seen.events.index(("suspended", "m1")) < seen.events.index(
        ("lost", "m1", "the ZooKeeper session expired"))


def test_a_suspended_leader_pauses_resumes_on_the_same_session_and_gives_up_after_the_window(
        clients: Any, path: str) -> None:
    """The listener's decisions on kazoo's states (the real SUSPENDED comes from a partition,
    tests/e2e/test_ha_masters.py): pause at once, resume when the session is back, and give up
    — once — when the rest of the session timeout passes without it."""
    reactor, seen = ThreadReactor(), Seen()
    leader = contender(reactor, clients(), path, "m1", seen, session_timeout=1.5)
    leader.start()
    reactor.pump(lambda: ("elected", "m1") in seen.events)
    assert leader.safety_window == pytest.approx(1.5)

    leader._on_state("SUSPENDED")
    reactor.pump(lambda: ("suspended", "m1") in seen.events)
    reactor.advance(1.4)
    leader._on_state("CONNECTED")
    reactor.pump(lambda: ("resumed", "m1") in seen.events)
    reactor.advance(3.0)  # the timer was cancelled
    assert seen.events == [("elected", "m1"), ("suspended", "m1"), ("resumed", "m1")]

    leader._on_state("SUSPENDED")
    reactor.pump(lambda: seen.events.count(("suspended", "m1")) == 2)
    reactor.advance(1.49)
    assert seen.events[-1] == ("suspended", "m1")
    reactor.advance(0.02)
    assert seen.events[-1][:2] == ("lost", "m1")
    assert "ZooKeeper unreachable" in seen.events[-1][2]
    leader._on_state("LOST")
    reactor.settle(0.2)
    assert [event for event in seen.events if event[0] == "lost"] == [seen.events[-1]]


def test_a_standby_whose_session_expires_joins_again(clients: Any, path: str, zk_hosts: str) -> None:
    from kazoo.client import KazooClient

    reactor, seen = ThreadReactor(), Seen()
    leader = contender(reactor, clients(), path, "m1", seen)
    leader.start()
    reactor.pump(lambda: ("elected", "m1") in seen.events)
    standby_client = clients()
    standby = contender(reactor, standby_client, path, "m2", seen)
    standby.start()
    reactor.pump(lambda: standby.node is not None)
    first_node = standby.node

    session_id, password = standby_client.client_id
    twin = KazooClient(hosts=zk_hosts, client_id=(session_id, password))
    twin.start()
    twin.stop()
    twin.close()
    reactor.pump(lambda: standby.node != first_node and standby.node is not None)
    assert not any(event[0] == "lost" for event in seen.events)  # a standby has nothing to lose
    leader.close()
    reactor.pump(lambda: ("elected", "m2") in seen.events)


def test_a_node_with_unreadable_data_is_no_leader(clients: Any, path: str) -> None:
    reactor, followed = ThreadReactor(), Seen()
    client = clients()
    client.create(f"{path}/json.info_", b"not json", ephemeral=True, sequence=True, makepath=True)
    follower = LeaderFollower(reactor, client, path, lambda info: followed(info.id))
    follower.start()
    reactor.settle(0.5)
    assert followed.events == []
    assert serving_leader(client, path) is None


class PathAppearsMeanwhile:
    """A client on which the path appears, with a serving leader in it, between the follower's
    ``get_children`` (no such node) and its ``exists`` — what happened when an agent of `tepui up
    --ha` started following while the first master was creating ``/masters``."""

    def __init__(self, client: Any, path: str) -> None:
        self.client, self.path, self.raced = client, path, False

    def get_children(self, path: str, watch: Any = None) -> Any:
        if not self.raced:
            import msgspec
            from kazoo.exceptions import NoNodeError

            self.raced = True
            self.client.create(f"{self.path}/json.info_", msgspec.json.encode(LeaderInfo(id="m1", epoch=3)),
                               sequence=True, makepath=True)
            raise NoNodeError()
        return self.client.get_children(path, watch=watch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_path_that_appears_between_the_two_reads_is_read_again(clients: Any, path: str) -> None:
    reactor, seen = ThreadReactor(), Seen()
    follower = LeaderFollower(reactor, PathAppearsMeanwhile(clients(), path), path, seen)
    follower.start()
    reactor.pump(lambda: bool(seen.events))
    assert [(info.id, info.epoch) for (info,) in seen.events] == [("m1", 3)]
    follower.close()
