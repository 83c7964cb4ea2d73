"""CurveZMQ key material: the master's key pair, the allow list, and client key pairs (DESIGN §7).

Layout of a key store (``tepui certs init DIR``)::

    DIR/master.key           the master's public key  (pyzmq/CZMQ certificate format)
    DIR/master.key_secret    the master's key pair    (0600)
    DIR/allow.yaml           the allow list: who may connect, as what (0600)
    DIR/issued/NAME/         what ``tepui certs issue`` hands out (unless --out says elsewhere):
        client.key, client.key_secret, master.key

A client directory (``--keys`` of an agent) holds ``client.key_secret`` (its key pair) and
``master.key`` (whom it expects to talk to). The certificate files are pyzmq's
(``zmq.auth.create_certificates``/``load_certificate``), so CZMQ tools read them too.

The allow list is YAML so that an operator can read and diff it; it is written atomically
(temp file + rename) because the master reloads it whenever it changes — a half-written file
must never be read as "nobody is allowed". Revoking keeps the entry (``revoked: true``): the
name stays taken and the history stays visible.
"""

from __future__ import annotations

import datetime
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import yaml
import zmq
import zmq.auth

ALLOW_LIST = "allow.yaml"
MASTER_CERT = "master"
CLIENT_CERT = "client"
KINDS = ("agent", "framework", "client")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
_Z85_KEY = re.compile(r"^[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


class KeyStoreError(Exception):
    """A key store problem; the message says what to do about it."""


@dataclass(frozen=True)
class KeyEntry:
    """One allow-listed client key. ``principal`` is who the key speaks for (for agents it is
    what binds an agent id: rotating an agent's key keeps the principal, so the agent keeps its
    id); ``roles`` limit the roles a framework key may subscribe in (empty or ``*``: any)."""

    name: str
    kind: str
    public_key: str
    principal: str
    roles: tuple[str, ...] = ()
    revoked: bool = False
    created: str = ""

    def to_yaml(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "public_key": self.public_key, "principal": self.principal,
                "roles": list(self.roles), "revoked": self.revoked, "created": self.created}


@dataclass(frozen=True)
class AllowList:
    entries: tuple[KeyEntry, ...] = ()
    by_key: dict[str, KeyEntry] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, entries: Iterable[KeyEntry]) -> AllowList:
        items = tuple(entries)
        return cls(items, {e.public_key: e for e in items})

    def active(self, public_key: str) -> KeyEntry | None:
        """The entry of a key that may connect now (known and not revoked), else None."""
        entry = self.by_key.get(public_key)
        return entry if entry is not None and not entry.revoked else None

    def named(self, name: str) -> KeyEntry | None:
        return next((e for e in self.entries if e.name == name), None)


@dataclass(frozen=True)
class ServerKeys:
    """What the master needs: its key pair and where its allow list lives."""

    public: bytes
    secret: bytes
    allow_list_path: str


@dataclass(frozen=True)
class ClientKeys:
    """What an agent, framework or CLI needs: its key pair and the master's public key. During
    a master key rotation (:mod:`tepui.sdk.rotation`) also the other master key it accepts
    (``fallback``) and the port the master serves the next key on (``rotation_port``)."""

    public: bytes
    secret: bytes
    server: bytes
    fallback: tuple[bytes, ...] = ()
    rotation_port: int | None = None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise KeyStoreError(f"bad key name {name!r}: use letters, digits and . _ - @ (at most 100), "
                            "starting with a letter or digit")
    return name


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def write_atomic(path: str, text: str, mode: int = 0o600) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _certificates(directory: str, name: str) -> tuple[bytes, bytes]:
    """A fresh key pair in ``directory/name.key{,_secret}``; the secret file is 0600."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(directory, name)
    os.chmod(secret_file, 0o600)
    public, secret = zmq.auth.load_certificate(secret_file)
    assert secret is not None
    return public, secret


def _load(path: str, want_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"cannot read the key file {path}: {exc}") from None
    if want_secret and secret is None:
        raise KeyStoreError(f"{path} holds no secret key; give the .key_secret file of the key pair")
    return public, secret


# --- the allow list ---------------------------------------------------------------------------


def read_allow_list(path: str) -> AllowList:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise KeyStoreError(f"no allow list at {path}; create a key store with `tepui certs init DIR`") from None
    except (OSError, yaml.YAMLError) as exc:
        raise KeyStoreError(f"cannot read the allow list {path}: {exc}; fix or restore the file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
        raise KeyStoreError(f"{path}: expected a mapping with a `keys:` list")
    entries = []
    for i, item in enumerate(data.get("keys") or []):
        try:
            kind = str(item["kind"])
            if kind not in KINDS:
                raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
            key = str(item["public_key"])
            if not _Z85_KEY.match(key):
                raise ValueError("public_key must be a 40-character Z85 CURVE key")
            name = check_name(str(item["name"]))
            roles = item.get("roles") or []
            if not isinstance(roles, list):
                raise ValueError("roles must be a list")
            entries.append(KeyEntry(name=name, kind=kind, public_key=key,
                                    principal=str(item.get("principal") or name),
                                    roles=tuple(str(r) for r in roles), revoked=bool(item.get("revoked", False)),
                                    created=str(item.get("created") or "")))
        except (KeyError, TypeError, ValueError, KeyStoreError) as exc:
            raise KeyStoreError(f"{path}: entry {i + 1} is invalid: {exc}; fix it or re-issue the key") from None
    return AllowList.of(entries)


def write_allow_list(path: str, allow: AllowList) -> None:
    header = ("# Tepui allow list: the CURVE keys that may connect to the master, and as what.\n"
              "# Managed by `tepui certs issue/revoke/list`; the master reloads it when it changes.\n")
    body = yaml.safe_dump({"version": 1, "keys": [e.to_yaml() for e in allow.entries]}, sort_keys=False)
    write_atomic(path, header + body)


# --- operations behind `tepui certs` ----------------------------------------------------------


def init_store(directory: str) -> ServerKeys:
    """Creates the master's key pair and an empty allow list; an existing store is kept (its
    keys are what every client already trusts), so running this twice is harmless."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    secret_file = os.path.join(directory, f"{MASTER_CERT}.key_secret")
    if not os.path.exists(secret_file):
        _certificates(directory, MASTER_CERT)
    allow_path = os.path.join(directory, ALLOW_LIST)
    if not os.path.exists(allow_path):
        write_allow_list(allow_path, AllowList())
    return load_server_keys(directory)


def load_server_keys(directory: str) -> ServerKeys:
    secret_file = os.path.join(directory, f"{MASTER_CERT}.key_secret")
    if not os.path.exists(secret_file):
        raise KeyStoreError(f"no master key pair in {directory} ({secret_file} is missing); "
                            f"create one with `tepui certs init {directory}`")
    public, secret = _load(secret_file, want_secret=True)
    allow_path = os.path.join(directory, ALLOW_LIST)
    read_allow_list(allow_path)  # fail at start, not at the first connection
    assert secret is not None
    return ServerKeys(public, secret, allow_path)


def issue(directory: str, name: str, kind: str, principal: str | None = None, roles: Iterable[str] = (),
          out: str | None = None) -> tuple[KeyEntry, str]:
    """Creates a client key pair in ``out`` (default ``DIR/issued/NAME``) with the master's
    public key beside it, and allow-lists it. Returns the entry and the client directory."""
    check_name(name)
    if kind not in KINDS:
        raise KeyStoreError(f"kind must be one of {', '.join(KINDS)}")
    server = load_server_keys(directory)
    allow = read_allow_list(server.allow_list_path)
    if allow.named(name) is not None:
        raise KeyStoreError(f"a key named {name!r} exists already (revoked or not); choose another name, "
                            f"e.g. {name}-2 (give --principal to keep the same identity when rotating)")
    target = out or os.path.join(directory, "issued", name)
    if os.path.exists(os.path.join(target, f"{CLIENT_CERT}.key_secret")):
        raise KeyStoreError(f"{target} holds a client key already; give another --out")
    public, _ = _certificates(target, CLIENT_CERT)
    from tepui.sdk.rotation import equip_client_dir

    equip_client_dir(directory, target)  # master.key, and both keys during a rotation
    entry = KeyEntry(name=name, kind=kind, public_key=public.decode("ascii"), principal=principal or name,
                     roles=tuple(r for r in roles if r), created=_now())
    write_allow_list(server.allow_list_path, AllowList.of(allow.entries + (entry,)))
    return entry, target


def revoke(directory: str, name: str) -> KeyEntry:
    path = os.path.join(directory, ALLOW_LIST)
    allow = read_allow_list(path)
    entry = allow.named(name)
    if entry is None:
        known = ", ".join(e.name for e in allow.entries) or "none"
        raise KeyStoreError(f"no key named {name!r} in {path} (known: {known}); see `tepui certs list`")
    revoked = replace(entry, revoked=True)
    write_allow_list(path, AllowList.of(revoked if e.name == name else e for e in allow.entries))
    return revoked


def load_client_keys(directory: str) -> ClientKeys:
    """A client directory: ``client.key_secret`` and ``master.key``."""
    secret_file = os.path.join(directory, f"{CLIENT_CERT}.key_secret")
    master_file = os.path.join(directory, f"{MASTER_CERT}.key")
    for path in (secret_file, master_file):
        if not os.path.exists(path):
            raise KeyStoreError(f"{path} is missing: a client key directory holds client.key_secret and master.key "
                                "as written by `tepui certs issue ... --out DIR`")
    public, secret = _load(secret_file, want_secret=True)
    server, _ = _load(master_file, want_secret=False)
    assert secret is not None
    from tepui.sdk.rotation import NEXT_CERT, read_rotation_port

    next_file = os.path.join(directory, f"{NEXT_CERT}.key")
    if not os.path.exists(next_file):
        return ClientKeys(public, secret, server)
    next_server, _ = _load(next_file, want_secret=False)
    return ClientKeys(public, secret, server, (next_server,), read_rotation_port(directory))


def z85_key(text: str, what: str) -> bytes:
    """A Z85 key from configuration, checked (a typo must not surface as a silent handshake failure)."""
    if not _Z85_KEY.match(text or ""):
        raise KeyStoreError(f"{what} is not a 40-character Z85 CURVE key")
    return text.encode("ascii")
