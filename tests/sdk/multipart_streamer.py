"""Run as a subprocess by undelivered_probe.py: a hostile key holder speaking ZMTP + CURVE itself
(libzmq sends nothing of a message before its last frame, so it cannot be the attacker) that
streams one multipart message that never ends — 64 KiB frames, all with MORE — and, each time
the master cuts it, connects again and goes on, until it has sent TOTAL bytes of frames.

    multipart_streamer.py HOST PORT SERVER_KEY PUBLIC SECRET TOTAL SECONDS [--first-a-whole-message]

With --first-a-whole-message it sends one whole message first on each connection, so the master
knows its key. Prints JSON: bytes sent, connections made, connections the master cut, and
handshakes refused (its key refused for a cool-down)."""

from __future__ import annotations

import json
import select
import socket
import sys
import time

from tepui.sim.curve import FLAG_MORE, CurveClient, CurveError, z85_key
from tepui.sim.zmtp import COMMAND, CURVE_GREETING, ZmtpParser, frame

FRAME = b"z" * 65536


def handshake(sock: socket.socket, client: CurveClient) -> bool:
    """True once READY came; False if the master refused (ERROR or a closed connection)."""
    sock.sendall(CURVE_GREETING + frame(client.hello(), COMMAND))
    parser = ZmtpParser(1 << 20)
    while True:
        data = sock.recv(65536)
        if not data:
            return False
        for kind, name, body in parser.feed(data):
            if kind != "command":
                continue
            if name == b"WELCOME":
                sock.sendall(frame(client.welcome(bytes(body)), COMMAND))
            elif name == b"READY":
                client.ready(bytes(body))
                return True
            elif name == b"ERROR":
                return False


class Cut(Exception):
    """The master closed its side (a FIN: our socket reads end-of-file)."""


def send(sock: socket.socket, data: bytes) -> None:
    """``sendall``, noticing the master's FIN: after its shutdown the master's kernel advertises
    no window, so a plain sendall would wait until the orphaned socket times out (a minute)."""
    view = memoryview(data)
    waited = 0.0
    while view:
        readable, writable, _ = select.select([sock], [sock], [], 0.2)
        if readable and not sock.recv(4096, socket.MSG_PEEK):
            raise Cut()
        if not writable:
            waited += 0.2
            if waited > 10:
                raise TimeoutError("the master neither reads nor cuts")
            continue
        view = view[sock.send(view):]


def main() -> None:
    host, port, server, public, secret, total, seconds = sys.argv[1:8]
    whole_first = "--first-a-whole-message" in sys.argv
    keys = z85_key(server), z85_key(public), z85_key(secret)
    limit = int(total)
    result = {"sent": 0, "connections": 0, "cut": 0, "refused": 0, "stalled": 0}
    deadline = time.monotonic() + float(seconds)
    while result["sent"] < limit and time.monotonic() < deadline:
        client = CurveClient(*keys, {"Socket-Type": b"DEALER", "Identity": b""})
        try:
            sock = socket.create_connection((host, int(port)))
        except OSError:
            time.sleep(0.05)
            continue
        result["connections"] += 1
        try:
            if not handshake(sock, client):
                result["refused"] += 1
                time.sleep(0.1)
                continue
            if whole_first:
                send(sock, frame(client.encrypt(b"\x91\x00")))  # a whole (if meaningless) message
            while result["sent"] < limit and time.monotonic() < deadline:
                send(sock, frame(client.encrypt(FRAME, FLAG_MORE)))
                result["sent"] += len(FRAME)
        except TimeoutError:
            result["stalled"] += 1
        except (Cut, OSError, CurveError):
            result["cut"] += 1
        finally:
            sock.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
