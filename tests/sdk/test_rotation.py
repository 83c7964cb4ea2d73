"""Master key rotation without downtime (tepui.sdk.rotation): the store's files, what client
directories hold, where a client looks for the master, and over real sockets a master serving
an old-key client, a new-key client and a both-keys client at once, then retiring the old key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tepui.cli.certs import certs_command
from tepui.sdk import rotation
from tepui.sdk.keys import ClientKeys, KeyStoreError, init_store, issue, load_client_keys
from tepui.sdk.rotation import master_candidates


def test_a_rotation_serves_the_next_key_on_its_port_and_finishing_makes_it_the_masters(tmp_path: Path) -> None:
    store = str(tmp_path / "keys")
    first = init_store(store)
    _entry, before = issue(store, "agent-1", "agent")
    assert rotation.served(store) == rotation.MasterKeys(first.public, first.secret)
    started = rotation.start(store, 5052)
    assert started.public == first.public and started.rotation_port == 5052 and started.next_public is not None
    # Every issued client directory now accepts both keys and knows the port; so does a new one.
    for directory in (before, issue(store, "agent-2", "agent")[1]):
        keys = load_client_keys(directory)
        assert (keys.server, keys.fallback, keys.rotation_port) == (first.public, (started.next_public,), 5052)
    finished = rotation.finish(store)
    assert finished == rotation.MasterKeys(started.next_public, started.next_secret)
    assert len(os.listdir(os.path.join(store, "retired"))) == 2  # the old pair is kept
    keys = load_client_keys(before)  # back to one key: the new one
    assert (keys.server, keys.fallback, keys.rotation_port) == (started.next_public, (), None)
    with pytest.raises(KeyStoreError, match="no master key rotation is under way"):
        rotation.finish(store)


def test_tepui_certs_rotate_master_starts_and_finishes(tmp_path: Path) -> None:
    store = str(tmp_path / "keys")
    init_store(store)
    runner = CliRunner()
    assert runner.invoke(certs_command, ["rotate-master", "--keys", store]).exit_code == 2  # neither
    started = runner.invoke(certs_command, ["rotate-master", "--keys", store, "--port", "5052"])
    assert started.exit_code == 0 and "served on port 5052" in started.output
    finished = runner.invoke(certs_command, ["rotate-master", "--keys", store, "--finish"])
    assert finished.exit_code == 0 and "rotation finished" in finished.output


def test_a_client_tries_its_endpoint_with_each_key_then_the_rotation_port() -> None:
    keys = ClientKeys(b"p", b"s", b"OLD", (b"NEW",), 5052)
    assert master_candidates("tcp://10.0.0.1:5050", keys) == [
        ("tcp://10.0.0.1:5050", b"OLD"), ("tcp://10.0.0.1:5050", b"NEW"),
        ("tcp://10.0.0.1:5052", b"OLD"), ("tcp://10.0.0.1:5052", b"NEW")]
    assert master_candidates("tcp://10.0.0.1:5050", ClientKeys(b"p", b"s", b"K")) == [("tcp://10.0.0.1:5050", b"K")]
    assert master_candidates("tcp://10.0.0.1:5050", None) == []


def _probe(*args: str) -> dict[str, Any]:
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    path = os.path.join(os.path.dirname(__file__), "rotation_probe.py")
    done = subprocess.run([sys.executable, path, str(port), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert "error" not in result and "deadline_hit" not in result, (result, done.stderr[-3000:])
    result["stderr"] = done.stderr
    return result


@pytest.mark.slow
def test_old_and_new_key_clients_are_served_at_once_and_a_both_keys_client_survives_the_retirement() -> None:
    result = _probe()
    phases, missing = result["phases"], result["missing"]
    # During the rotation one master serves the old key (port P) and the next key (its port) at once.
    assert set(phases["rotating"]) == {"old-only", "new-only", "both"}, phases
    assert result["endpoints_rotating"]["new-only"].endswith(f":{result['rotation_port']}")
    # Finished: the old key is refused; the both-keys client goes on (it reconnected with the new
    # key), and so does the new-key client, moved from the closed rotation port to the master's.
    assert result["received_last"]["old-only"] < result["sent_before_finish"]["old-only"], result
    assert {"both", "new-only"} <= set(phases["finished"]), phases
    assert result["endpoints_finished"]["new-only"] == result["address"]
    assert result["failures"]["old-only"] >= 1
    # Numbered messages: the only ones that may be lost are those in flight on a connection the
    # finish ended — after the last one the master had then, before the client's reconnection.
    for name in ("both", "new-only"):
        window = range(result["received_before_finish"][name] + 1, result["reconnected_at"][name])
        assert all(number in window for number in missing[name]), (name, missing[name], window)
    assert "event=master_key_rotated" in result["stderr"] and "same_socket=True" in result["stderr"]


@pytest.mark.slow
def test_a_client_restarted_after_the_finish_with_both_keys_loses_nothing_to_its_retired_key_attempt() -> None:
    # Its first attempt (the retired key, on the master's port) fails; the attempt with the next
    # key on the same port works. The message sent before the first attempt failed arrives, and
    # the abandoned attempt's failures never make the client leave the working one (they did:
    # a lingering attempt failed every 100 ms under the same endpoint name).
    result = _probe("--stale")
    assert result["missing"]["stale"] == [], result
    assert result["failures"]["stale"] == 1, result
    assert result["uses_next_key"] and result["endpoint"] == result["address"], result
