"""Rotating the master's CURVE key without downtime (docs/security.md "Key rotation").

Why two ports: a CURVE client must know the server's public key before its first byte (its
HELLO is boxed to it), and a libzmq listener serves exactly one key pair — but each ``bind()``
copies the socket's options, so one ROUTER can listen on two ports with two key pairs. During a
rotation the master serves its current key on its port and the next key on a rotation port:

1. ``start`` (``tepui certs rotate-master --keys DIR --port Q``): a next key pair
   (``master-next.key``) and ``rotation.yaml`` (the port) in the store; every client directory
   under ``DIR/issued`` gets both keys and the port. A running master binds Q within a second.
2. Clients move one at a time: a client directory written from now on (``tepui certs issue``,
   or the ones updated in place) accepts both keys and tries, in order: its master port with
   each key, then the rotation port with each key, moving on when a handshake fails or the port
   does not answer (:class:`tepui.sdk.keys.ClientKeys`, ``DealerEndpoint``).
3. ``finish`` (``--finish``): the next key becomes ``master.key`` (the old pair is kept under
   ``retired/``), and the running master serves the new key on its own port — on the same
   listening socket, so no connection attempt is ever refused by the kernel — and closes the
   rotation port. Clients that knew only the old key are refused from then on; the others
   reconnect with the new key.

This module holds the store's side (files), what the master should serve (:func:`served`) and
where a client looks for the master (:func:`master_candidates`).
"""

from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import dataclass
from typing import Iterator

import yaml
import zmq.auth

from tepui.sdk.keys import MASTER_CERT, ClientKeys, KeyStoreError, _certificates, write_atomic

NEXT_CERT = "master-next"
ROTATION = "rotation.yaml"


@dataclass(frozen=True)
class MasterKeys:
    """What the master serves: its current key pair on its port, and during a rotation the
    next key pair on ``rotation_port``."""

    public: bytes
    secret: bytes
    next_public: bytes | None = None
    next_secret: bytes | None = None
    rotation_port: int | None = None


def _pair(directory: str, name: str) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(os.path.join(directory, f"{name}.key_secret"))
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"cannot read {name}.key_secret in {directory}: {exc}") from None
    if secret is None:
        raise KeyStoreError(f"{directory}/{name}.key_secret holds no secret key")
    return public, secret


def read_rotation_port(directory: str) -> int | None:
    """The rotation port recorded in a store or client directory, or None (no rotation)."""
    path = os.path.join(directory, ROTATION)
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as exc:
        raise KeyStoreError(f"cannot read {path}: {exc}") from None
    port = data.get("port") if isinstance(data, dict) else None
    if not isinstance(port, int) or not 0 < port < 65536:
        raise KeyStoreError(f"{path}: `port` must be a TCP port number")
    return port


def served(directory: str) -> MasterKeys:
    """What a master on the store ``directory`` should serve now."""
    public, secret = _pair(directory, MASTER_CERT)
    port = read_rotation_port(directory)
    if port is None or not os.path.exists(os.path.join(directory, f"{NEXT_CERT}.key_secret")):
        return MasterKeys(public, secret)
    next_public, next_secret = _pair(directory, NEXT_CERT)
    return MasterKeys(public, secret, next_public, next_secret, port)


def stamp(directory: str) -> tuple[tuple[int, int], ...]:
    """Changes when any file :func:`served` reads changes (cheap enough to poll every second)."""
    stamps = []
    for name in (f"{MASTER_CERT}.key_secret", f"{NEXT_CERT}.key_secret", ROTATION):
        try:
            st = os.stat(os.path.join(directory, name))
            stamps.append((st.st_ino, st.st_mtime_ns))
        except OSError:
            stamps.append((0, 0))
    return tuple(stamps)


def _client_dirs(directory: str) -> Iterator[str]:
    issued = os.path.join(directory, "issued")
    if os.path.isdir(issued):
        for name in sorted(os.listdir(issued)):
            path = os.path.join(issued, name)
            if os.path.exists(os.path.join(path, "client.key_secret")):
                yield path


def equip_client_dir(directory: str, client_dir: str) -> None:
    """Gives a client directory the master keys it needs now: ``master.key``, and during a
    rotation ``master-next.key`` and ``rotation.yaml`` too (removed again once it finished)."""
    rotating = read_rotation_port(directory) is not None
    for name, wanted in ((f"{MASTER_CERT}.key", True), (f"{NEXT_CERT}.key", rotating), (ROTATION, rotating)):
        source, target = os.path.join(directory, name), os.path.join(client_dir, name)
        if wanted:
            shutil.copyfile(source, target + ".tmp")
            os.replace(target + ".tmp", target)
        elif os.path.exists(target):
            os.unlink(target)


def start(directory: str, port: int) -> MasterKeys:
    """Creates the next key pair (kept if a rotation is already under way) and records the
    rotation port; every client directory under ``DIR/issued`` is given both keys."""
    if not 0 < port < 65536:
        raise KeyStoreError(f"--port {port}: give the TCP port the master should serve the next key on")
    _pair(directory, MASTER_CERT)  # a store, not any directory
    if not os.path.exists(os.path.join(directory, f"{NEXT_CERT}.key_secret")):
        _certificates(directory, NEXT_CERT)
    write_atomic(os.path.join(directory, ROTATION),
                 "# A master key rotation is under way (tepui certs rotate-master); the master serves the next\n"
                 "# key on this port until `tepui certs rotate-master --finish`.\n" + yaml.safe_dump({"port": port}))
    for client_dir in _client_dirs(directory):
        equip_client_dir(directory, client_dir)
    return served(directory)


def finish(directory: str) -> MasterKeys:
    """The next key becomes the master's key; the old pair goes to ``retired/``."""
    next_secret = os.path.join(directory, f"{NEXT_CERT}.key_secret")
    if read_rotation_port(directory) is None or not os.path.exists(next_secret):
        raise KeyStoreError(f"no master key rotation is under way in {directory}; start one with "
                            f"`tepui certs rotate-master --keys {directory} --port PORT`")
    retired = os.path.join(directory, "retired")
    os.makedirs(retired, mode=0o700, exist_ok=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    for suffix in (".key", ".key_secret"):
        shutil.copy2(os.path.join(directory, MASTER_CERT + suffix), os.path.join(retired, f"master-{when}{suffix}"))
    # The secret first: the master reads master.key_secret (the pair); master.key is for clients.
    os.replace(next_secret, os.path.join(directory, f"{MASTER_CERT}.key_secret"))
    os.replace(os.path.join(directory, f"{NEXT_CERT}.key"), os.path.join(directory, f"{MASTER_CERT}.key"))
    os.unlink(os.path.join(directory, ROTATION))
    for client_dir in _client_dirs(directory):
        equip_client_dir(directory, client_dir)
    return served(directory)


def master_candidates(connect: str, keys: ClientKeys | None) -> list[tuple[str, bytes]]:
    """Where to look for the master, in order: our endpoint with each master key we accept, then
    (during a rotation) the rotation port with each. Without a rotation: one candidate."""
    if keys is None:
        return []
    servers = (keys.server, *keys.fallback)
    endpoints = [connect]
    if keys.rotation_port is not None and connect.startswith("tcp://"):
        rotation = f"{connect.rsplit(':', 1)[0]}:{keys.rotation_port}"
        if rotation != connect:
            endpoints.append(rotation)
    return [(endpoint, server) for endpoint in endpoints for server in servers]
