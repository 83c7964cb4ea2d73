"""Clients given ``zk://`` follow the serving master (tepui.sdk.master_follower): the key
decision exactly, and against the real ZooKeeper at TEPUI_TEST_ZK (scripts/test starts one) a
driver, an agent and the simulator moving to a new leader and registering again within a second
of it publishing its epoch, while the old one still answers (leader_follow_probe.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid

import pytest

from tepui.sdk.dealer import DealerEndpoint
from tepui.sdk.keys import ClientKeys
from tepui.sdk.leadership import LeaderInfo
from tepui.sdk.master_follower import master_key, target_of
from tests.zookeeper_access import zk_hosts

KEY_A = b"A" * 40
KEY_B = b"B" * 40
CLIENT = ClientKeys(b"P" * 40, b"S" * 40, KEY_A)


def test_a_plain_client_uses_no_key() -> None:
    assert master_key(None, LeaderInfo("m1", "h:1", public_key=KEY_B.decode())) is None


def test_a_configured_master_key_wins_and_a_different_published_one_is_logged_naming_both(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "tepui.master_follower"):
        assert master_key(CLIENT, LeaderInfo("m1", "h:1", public_key=KEY_B.decode())) == KEY_A
    [record] = caplog.records
    assert "configured=" + KEY_A.decode() in record.getMessage() and "published=" + KEY_B.decode() in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, "tepui.master_follower"):
        assert master_key(CLIENT, LeaderInfo("m1", "h:1", public_key=KEY_A.decode())) == KEY_A
        assert master_key(CLIENT, LeaderInfo("m1", "h:1")) == KEY_A
    assert caplog.records == []


def test_client_keys_without_a_master_key_take_the_published_one() -> None:
    keys = ClientKeys(b"P" * 40, b"S" * 40, b"")
    assert master_key(keys, LeaderInfo("m1", "h:1", public_key=KEY_B.decode())) == KEY_B


def test_the_target_is_the_leaders_zeromq_address() -> None:
    target = target_of(LeaderInfo("m1", "10.0.0.5:5050", epoch=3), None)
    assert (target.connect, target.server_key, target.info.epoch) == ("tcp://10.0.0.5:5050", None, 3)


def test_retarget_is_in_the_dealers_api() -> None:
    assert callable(DealerEndpoint.retarget)


def run_probe(kind: str) -> dict:
    probe = os.path.join(os.path.dirname(__file__), "leader_follow_probe.py")
    with tempfile.TemporaryDirectory(prefix=f"tepui-follow-{kind}-") as work:
        done = subprocess.run([sys.executable, probe, zk_hosts(), f"/tepui-test/{uuid.uuid4().hex}", kind, work],
                              capture_output=True, text=True, timeout=120)
        logs = {name: open(os.path.join(work, name), errors="replace").read()[-3000:]
                for name in os.listdir(work) if name.endswith((".out", ".err"))}
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "timed_out" not in result, (result, logs, done.stderr[-3000:])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("kind,count", [("driver", 1), ("agent", 1), ("sim", 40)])
def test_a_client_moves_to_the_new_leader_and_registers_again_within_a_second(kind: str, count: int) -> None:
    result = run_probe(kind)
    assert result["first"]["registrations"] >= count
    assert result["before_serving"] == 0, "a standby (epoch 0) is not followed"
    assert result["second"]["registrations"] >= count
    assert result["second"]["last_after_s"] < 1.0, result
    assert result["first_after_change"] == 0, "nothing more goes to the old leader"
    if kind == "driver":
        assert result["driver_connected"]
    if kind == "sim":
        [line] = [line for line in result["sim_stdout"] if line.startswith("reregistered ")]
        assert line.startswith(f"reregistered agents={count} leader=B epoch=2 seconds=")


def test_a_leader_without_a_usable_address_has_no_target() -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        target_of(LeaderInfo("m1", ""), None)
