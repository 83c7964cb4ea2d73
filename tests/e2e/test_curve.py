"""CurveZMQ with real processes: a `tepui up` cluster is encrypted — read the bytes on the wire
between a framework (`tepui run`) and the master through a recording TCP relay, and what the
framework sent (its task id, its command) never appears in them — while the same run against an
``--insecure`` master shows both in plain text. And `tepui up` needs no flag from its clients."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from .conftest import LogBook, child_env, free_ports, get_state, stop_agent, stop_process, tepui_cmd

pytestmark = pytest.mark.slow


class Relay:
    """A TCP relay on a free port to ``target``, recording every byte in both directions."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.recorded = bytearray()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                with self.lock:
                    self.recorded += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.server.close()


def run_through(relay: Relay, marker: str, env: dict[str, str]) -> tuple[str, str]:
    """`tepui run` through the relay; returns (its output, the task id it used)."""
    done = subprocess.run(tepui_cmd("run", "--master", f"127.0.0.1:{relay.port}", "--name", "wire", "--",
                                    "echo", marker), capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    task_id = re.search(r"(wire-[0-9a-f]{8})", done.stderr)
    assert task_id, done.stderr
    return done.stdout, task_id.group(1)


def test_34_tepui_up_traffic_is_encrypted_and_insecure_traffic_is_not(tmp_path: Path, logbook: LogBook) -> None:
    marker = f"secret-{uuid.uuid4().hex}"
    # 1. `tepui up`: keys, encryption and the client configuration, with no flag anywhere.
    port, http_port = free_ports(2)
    env = child_env()
    env["TEPUI_CONFIG"] = str(tmp_path / "config.yaml")
    state_dir = logbook.add("state-dir", tmp_path / "state")
    up = subprocess.Popen(tepui_cmd("up", "--agents", "1", "--state-dir", str(state_dir), "--port", str(port),
                                    "--http-port", str(http_port), "--agent-resources", "cpus:1;mem:256"),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    relay = Relay(port)
    try:
        deadline = time.monotonic() + 30
        while (get_state(http_port) or {}).get("activated_slaves") != 1:
            assert up.poll() is None and time.monotonic() < deadline, "tepui up did not come up"
            time.sleep(0.1)
        assert os.path.exists(tmp_path / "config.yaml")
        output, task_id = run_through(relay, marker, env)
        assert marker in output  # it ran, and the client needed no key flag
        with relay.lock:
            wire = bytes(relay.recorded)
        assert len(wire) > 1000, "the relay saw no traffic"
        assert marker.encode() not in wire and task_id.encode() not in wire
        assert b"echo" not in wire and b"SUBSCRIBE" not in wire
    finally:
        relay.close()
        up.send_signal(signal.SIGTERM)
        up.wait(30)

    # 2. --insecure: the very same run is readable on the wire.
    port, http_port = free_ports(2)
    plain = child_env()
    plain["TEPUI_CONFIG"] = os.devnull
    master = subprocess.Popen(tepui_cmd("master", "--ip", "127.0.0.1", "--port", str(port), "--http-port",
                                        str(http_port), "--insecure"), stdout=subprocess.DEVNULL,
                              stderr=open(logbook.add("master", tmp_path / "master.log"), "wb"), env=plain)
    agent = subprocess.Popen(tepui_cmd("agent", "--master", f"127.0.0.1:{port}", "--work-dir", str(tmp_path / "agent"),
                                       "--http-port", "0", "--resources", "cpus:1;mem:256", "--insecure"),
                             stdout=subprocess.DEVNULL, stderr=open(logbook.add("agent", tmp_path / "agent.log"), "wb"),
                             env=plain)
    relay = Relay(port)
    try:
        deadline = time.monotonic() + 20
        while (get_state(http_port) or {}).get("activated_slaves") != 1:
            assert time.monotonic() < deadline, "the insecure cluster did not come up"
            time.sleep(0.1)
        assert "event=insecure_mode" in (tmp_path / "master.log").read_text()
        output, task_id = run_through(relay, marker, plain)
        assert marker in output
        with relay.lock:
            wire = bytes(relay.recorded)
        assert marker.encode() in wire and task_id.encode() in wire
    finally:
        relay.close()
        stop_agent(agent, 15)
        stop_process(master, 10)
