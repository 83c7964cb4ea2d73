"""Issue 15, bugs 1, 2, 3 and 5 on the master's core: what a framework says about itself is
checked before anything is stored, framework ids are the master's to issue, and the numbers a
client sends (failover timeout, kill grace period, decline filters) are finite and bounded. Each
refusal is one ERROR naming the field, and changes nothing else."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from tepui.master.core import MasterCore
from tepui.master.events import Received, Send
from tepui.master.durability.registry import Recovered
from tepui.master.http.state_view import render_state
from tepui.sdk.codec import Codec, ProtocolError, envelope
from tepui.sdk.protocol import agent as am
from tepui.sdk.protocol import scheduler as sm
from tepui.sdk.protocol.envelope import MasterInbound
from tepui.sdk.protocol.values import Filters, FrameworkInfo, KillPolicy, TaskState, TaskStatus
from tests.master.test_core import AGENT, FW, launched, make_core, sends, subscribe

HOSTILE = b"hostile-peer"
NEWCOMER = b"newcomer-peer"


def refusal(effects: list[Any], peer: bytes = FW) -> sm.Error:
    """The effects are one ERROR to ``peer`` and nothing else (no registry write, no timer, no log)."""
    assert len(effects) == 1, effects
    [effect] = effects
    assert isinstance(effect, Send) and effect.peer == peer and isinstance(effect.body, sm.Error), effect
    return effect.body


def nothing_stored(core: MasterCore) -> None:
    assert core.frameworks == {} and core.allocator.frameworks == {} and core.peers == {}


# --- bug 1: an id over the registry's key limit -----------------------------------------------


def test_a_subscribe_with_an_id_of_over_1024_characters_is_refused_before_anything_is_stored() -> None:
    """It got no reply: the framework was kept in memory, the registry refused the key
    (handler_failed), and its failover timer raised again 15 s later."""
    core = make_core()
    error = refusal(subscribe(core, id="x" * 1025))
    assert error.field == "$.body.framework_info.id" and error.call_type == "SUBSCRIBE"
    assert error.message == "SUBSCRIBE refused: framework_info.id is 1025 characters long; the limit is 255"
    nothing_stored(core)


# --- bug 2: ids are the master's to issue -------------------------------------------------------


@pytest.mark.parametrize("framework_id", ["..", ".", "../../x", "a/b", "a\nforged", "a b", "a\x9bb", ""])
def test_a_framework_id_that_is_not_path_safe_and_printable_is_refused(framework_id: str) -> None:
    core = make_core()
    error = refusal(subscribe(core, id=framework_id))
    assert error.field == "$.body.framework_info.id"
    nothing_stored(core)


def test_an_id_the_master_would_issue_next_cannot_be_claimed_so_two_frameworks_never_share_one() -> None:
    core = make_core()
    subscribe(core)  # m-F0001
    error = refusal(subscribe(core, peer=HOSTILE, id="m-F0002"), HOSTILE)
    assert error.field == "$.body.framework_info.id" and "not issued by this master" in error.message
    assert list(core.frameworks) == ["m-F0001"]
    # The newcomer gets m-F0002, and it is its own.
    [subscribed] = sends(subscribe(core, peer=NEWCOMER), NEWCOMER)
    assert subscribed == sm.Subscribed("m-F0002", 15.0, core.master_info)
    assert core.frameworks["m-F0002"].peer == NEWCOMER


def test_without_a_registry_a_previous_masters_framework_resubscribes_under_its_id() -> None:
    """Mesos's way after a failover: the previous master issued it, this one cannot check. Its
    prefix is another master's, so this master never issues it."""
    core = make_core()
    [subscribed] = sends(subscribe(core, id="old-F0001"), FW)
    assert subscribed == sm.Subscribed("old-F0001", 15.0, core.master_info)
    [newcomer] = sends(subscribe(core, peer=NEWCOMER), NEWCOMER)
    assert newcomer.framework_id == "m-F0001"


def test_with_a_durable_registry_only_a_recovered_framework_id_is_accepted() -> None:
    """The registry keeps every framework a previous master admitted and did not remove: any
    other id was never issued, or its framework was removed."""
    core = make_core(durable_registry=True)
    kept = FrameworkInfo(user="u", name="fw", id="old-F0001", failover_timeout=60.0)
    core.recover(Recovered(frameworks={"old-F0001": kept}), 0.0)
    error = refusal(subscribe(core, peer=HOSTILE, id="old-F0002"), HOSTILE)
    assert error.field == "$.body.framework_info.id" and "unknown to this master" in error.message
    assert list(core.frameworks) == ["old-F0001"]
    [subscribed] = sends(subscribe(core, id="old-F0001"), FW)
    assert subscribed == sm.Subscribed("old-F0001", 15.0, core.master_info)


def test_a_removed_framework_cannot_come_back_and_its_error_names_the_id_field() -> None:
    core = make_core()
    subscribe(core)
    core.handle(Received(FW, sm.Teardown("m-F0001")), 1.0)
    error = refusal(subscribe(core, id="m-F0001", now=2.0))
    assert error.field == "$.body.framework_info.id" and "was removed" in error.message


# --- bug 3: every string a client controls is bounded -------------------------------------------


BAD_INFO: list[tuple[str, dict[str, Any], str]] = [
    ("huge-name", {"name": "n" * 3_000_000}, "name"),
    ("forged-log-line", {"name": "fw\n2024-01-01 INFO master forged event=framework_removed"}, "name"),
    ("long-user", {"user": "u" * 256}, "user"),
    ("user-with-space", {"user": "a b"}, "user"),
    ("long-hostname", {"hostname": "h" * 256}, "hostname"),
    ("principal-with-control", {"principal": "p\x1b[31m"}, "principal"),
    ("long-webui-url", {"webui_url": "http://x/" + "a" * 2048}, "webui_url"),
    ("too-many-roles", {"roles": [f"r{i}" for i in range(129)]}, "roles"),
    ("long-role", {"roles": ["r" * 256]}, "roles[0]"),
    ("bad-role", {"roles": ["*", "../x"]}, "roles[1]"),
    ("too-many-capabilities", {"capabilities": ["PARTITION_AWARE"] * 33}, "capabilities"),
    ("bad-capability", {"capabilities": ["PARTITION_AWARE", "x" * 65]}, "capabilities[1]"),
    ("too-many-labels", {"labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
    ("long-label-value", {"labels": {"k": "v" * 1025}}, "labels"),
    ("empty-label-key", {"labels": {"": "v"}}, "labels"),
]


@pytest.mark.parametrize(("fields", "field"), [pytest.param(f, p, id=name) for name, f, p in BAD_INFO])
def test_a_subscribe_with_an_unbounded_or_unsafe_string_is_refused_naming_the_field(fields: dict[str, Any],
                                                                                     field: str) -> None:
    core = make_core()
    info = FrameworkInfo(**{"user": "u", "name": "fw", **fields})
    error = refusal(core.handle(Received(FW, sm.Subscribe(info)), 0.0))
    assert error.field == f"$.body.framework_info.{field}"
    assert len(error.message) < 300  # the refusal never echoes a megabyte back
    nothing_stored(core)


def test_suppressed_roles_must_be_roles_of_the_framework() -> None:
    core = make_core()
    info = FrameworkInfo(user="u", name="fw", roles=["a"])
    error = refusal(core.handle(Received(FW, sm.Subscribe(info, suppressed_roles=["a", "b"])), 0.0))
    assert error.field == "$.body.suppressed_roles[1]"


def test_an_update_framework_with_a_huge_name_is_refused_and_changes_nothing() -> None:
    core = make_core()
    subscribe(core)
    before = core.frameworks["m-F0001"].info
    info = msgspec.structs.replace(before, name="n" * 3_000_000)
    error = refusal(core.handle(Received(FW, sm.UpdateFramework(info)), 1.0))
    assert (error.field, error.call_type) == ("$.body.framework_info.name", "UPDATE_FRAMEWORK")
    assert core.frameworks["m-F0001"].info == before


def test_a_subscribe_with_a_huge_id_is_rate_limited_by_its_connection_not_under_its_id() -> None:
    """The limit runs before validation: keyed by a megabyte id, fresh ids would fill the
    limiter's buckets with megabytes each."""
    core = make_core()
    event = Received(FW, sm.Subscribe(FrameworkInfo(user="u", name="fw", id="x" * 1_000_000)))
    assert core.gatekeeper.rate_key(event) == f"peer:{FW.hex()[:16]}"
    assert core.gatekeeper.rate_key(Received(FW, sm.Subscribe(FrameworkInfo(user="u", name="fw", id="old-F1")))) == \
        "framework:old-F1"


# --- bug 5: numbers are finite and bounded -------------------------------------------------------


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -1.0, 11 * 365 * 86400.0])
def test_a_failover_timeout_that_is_not_a_finite_bounded_number_is_refused(seconds: float) -> None:
    core = make_core()
    error = refusal(subscribe(core, failover_timeout=seconds))
    assert error.field == "$.body.framework_info.failover_timeout"
    nothing_stored(core)


@pytest.mark.parametrize("grace", [math.nan, math.inf, -math.inf, -1.0, 86401.0])
def test_a_kill_with_a_grace_period_that_is_not_finite_and_bounded_is_refused_and_not_sent(grace: float) -> None:
    core = make_core()
    launched(core)
    error = refusal(core.handle(Received(FW, sm.Kill("m-F0001", "t1", None, KillPolicy(grace))), 5.0))
    assert (error.field, error.call_type) == ("$.body.kill_policy.grace_period_seconds", "KILL")


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -math.inf, -1.0, 366 * 86400.0])
def test_decline_filters_that_are_not_finite_and_bounded_are_refused_by_the_decoder(seconds: float) -> None:
    """Mesos silently uses 5 s for these and caps at a year; the decoder refuses them, naming
    the field, so the client learns its filter was not the one it asked for."""
    codec: Codec[Any] = Codec(MasterInbound)
    data = codec.encode(envelope(sm.Decline("m-F0001", ["m-O0001"], Filters(seconds)), 1))
    with pytest.raises(ProtocolError) as caught:
        codec.decode(data)
    assert caught.value.field == "$.body.filters.refuse_seconds"


# --- what a custom executor writes, kept by the master -------------------------------------------


def test_a_huge_status_message_from_an_executor_reaches_the_framework_but_is_cut_in_state() -> None:
    """A custom executor is the framework's code: a 3 MB message (and data) kept with each of
    the 1,000 completed tasks a framework keeps was gigabytes of memory and of /state."""
    core = make_core()
    launched(core)
    status = TaskStatus(task_id="t1", state=TaskState.FAILED, message="m" * 3_000_000, data=b"d" * 1_000_000,
                        labels={"k": "v"}, agent_id="m-S0001", uuid=b"u1")
    effects = core.handle(Received(AGENT, am.StatusUpdate("m-F0001", status)), 2.0)
    assert sm.Update(status) in sends(effects, FW)
    [kept] = [t for t in core.frameworks["m-F0001"].completed if t.task_id == "t1"]
    assert kept.status is not None and kept.status.data is None and kept.status.labels == {}
    assert len(kept.status.message or "") < 1100 and kept.status.state == TaskState.FAILED
    [state_task] = render_state(core, 3.0)["frameworks"][0]["completed_tasks"]
    assert len(state_task["message"]) < 1100
