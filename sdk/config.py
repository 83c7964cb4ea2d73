"""The client configuration: where a cluster is and the keys to reach it (like kubeconfig).

``tepui up`` writes it; ``tepui run``/``state``/``logs``, the SDK drivers and the examples read
it, so that none of them needs a flag against a local cluster. Looked up in ``$TEPUI_CONFIG``,
else ``~/.config/tepui/config.yaml`` (``$XDG_CONFIG_HOME`` respected). The file holds a secret
key and a token, so it is written 0600. Format (YAML, every field optional)::

    master: 127.0.0.1:5050              # ZeroMQ HOST:PORT of the master, or zk://H1:P1,H2:P2/PATH
                                        # (HA masters: clients follow the serving one)
    master_http: http://127.0.0.1:5080  # the master's HTTP API
    master_public_key: Z85...           # whom the client expects to talk to
    client_public_key: Z85...           # the client's key pair, inline ...
    client_secret_key: Z85...
    client_keys: /path/to/dir           # ... or a client key directory (client.key_secret, master.key)
    http_token: ...                     # bearer token for the master's mutating HTTP calls
    http_ca: /path/ca.pem               # private CA for an https:// master_http
    keys_dir: /path/state/keys          # the master's key store (`tepui certs` uses it without --keys)

With ``master: zk://...`` the HTTP API is the serving master's published ``http`` (looked up
when a command needs it, :mod:`tepui.sdk.master_lookup`) unless ``master_http`` or
``$TEPUI_MASTER_HTTP`` names one; ``master_public_key`` may then be left out, and the key the
leader publishes is used (:func:`tepui.sdk.master_follower.master_key` says when which).

No file means no keys: clients then connect without CURVE, which only a master started with
``--insecure`` accepts (and a secure master refuses; the client logs why).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

from tepui.sdk.keys import ClientKeys, KeyStoreError, write_atomic, load_client_keys, z85_key
from tepui.sdk.zookeeper import is_zk

ENV = "TEPUI_CONFIG"
DEFAULT_MASTER = "127.0.0.1:5050"
DEFAULT_MASTER_HTTP = "127.0.0.1:5080"


class ConfigError(Exception):
    """The client configuration cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class ClientConfig:
    path: str | None = None
    master: str | None = None
    master_http: str | None = None
    keys: ClientKeys | None = None
    http_token: str | None = None
    http_ca: str | None = None  # PEM file of a private CA for an https:// master_http
    # The key store of the cluster (written by ``tepui up``): ``tepui certs`` finds it there when
    # the cluster runs with another --state-dir than the default.
    keys_dir: str | None = None


def default_config_path() -> str:
    explicit = os.environ.get(ENV)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "tepui", "config.yaml")


def load_client_config(path: str | None = None) -> ClientConfig:
    """The configuration at ``path`` (default: :func:`default_config_path`); an empty one when
    the file does not exist. A file that exists but is broken is an error, never ignored: a
    client silently falling back to plain TCP would only confuse."""
    path = path or default_config_path()
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        return ClientConfig()
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the client configuration {path}: {exc}; fix it, delete it, or point "
                          f"${ENV} at another file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping (master:, master_public_key:, ...)")
    try:
        return ClientConfig(path=path, master=_text(data, "master"), master_http=_text(data, "master_http"),
                            keys=_keys(data, path), http_token=_text(data, "http_token"),
                            http_ca=_text(data, "http_ca"), keys_dir=_keys_dir(data, path))
    except KeyStoreError as exc:
        raise ConfigError(f"{path}: {exc}; run `tepui up` again or fix the file") from None


def resolve_master(explicit: str | None, config: ClientConfig) -> str:
    """Which master a client talks to: the flag, else ``$TEPUI_MASTER``, else the configuration,
    else the local default."""
    return explicit or os.environ.get("TEPUI_MASTER") or config.master or DEFAULT_MASTER


def master_http_address(explicit: str | None, config: ClientConfig) -> str:
    """Where the master's HTTP API is to be found, as given: the flag, else
    ``$TEPUI_MASTER_HTTP``, else the master (``$TEPUI_MASTER`` or the configuration's) when it is
    a ``zk://`` address, else the configuration's ``master_http``, else the local default. A
    ``zk://`` answer still has to be looked up (:func:`resolve_master_http`)."""
    master = os.environ.get("TEPUI_MASTER") or config.master
    return (explicit or os.environ.get("TEPUI_MASTER_HTTP") or (master if is_zk(master) else None)
            or config.master_http or DEFAULT_MASTER_HTTP)


def resolve_master_http(explicit: str | None, config: ClientConfig) -> str:
    """The master's HTTP API (:func:`master_http_address`); a ``zk://`` address becomes the
    serving master's published URL, read now — or a :class:`ConfigError`
    (``tepui.sdk.master_lookup.NoServingMaster``) naming the URL and what to do."""
    address = master_http_address(explicit, config)
    if not is_zk(address):
        return address
    from tepui.sdk.master_lookup import leader_http

    return leader_http(address)


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return None if value is None else str(value)


def _beside(path: str, directory: str) -> str:
    """A directory named in the configuration at ``path``: a relative one is read from there."""
    return os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(directory))


def _keys_dir(data: dict[str, Any], path: str) -> str | None:
    directory = _text(data, "keys_dir")
    return _beside(path, directory) if directory else None


def _keys(data: dict[str, Any], path: str) -> ClientKeys | None:
    directory = _text(data, "client_keys")
    if directory:
        keys = load_client_keys(_beside(path, directory))
        if data.get("master_public_key"):
            keys = ClientKeys(keys.public, keys.secret, z85_key(str(data["master_public_key"]), "master_public_key"))
        return keys
    present = [name for name in ("master_public_key", "client_public_key", "client_secret_key") if data.get(name)]
    if not present:
        return None
    following = is_zk(os.environ.get("TEPUI_MASTER") or _text(data, "master"))
    if present == ["client_public_key", "client_secret_key"] and following:
        # A zk:// master and no configured key: the serving master's published key is used.
        return ClientKeys(z85_key(str(data["client_public_key"]), "client_public_key"),
                          z85_key(str(data["client_secret_key"]), "client_secret_key"), b"")
    if len(present) < 3:
        missing = sorted({"master_public_key", "client_public_key", "client_secret_key"} - set(present))
        raise KeyStoreError(f"{', '.join(missing)} missing (give all three keys, or client_keys: DIR)")
    return ClientKeys(z85_key(str(data["client_public_key"]), "client_public_key"),
                      z85_key(str(data["client_secret_key"]), "client_secret_key"),
                      z85_key(str(data["master_public_key"]), "master_public_key"))


def write_client_config(config: ClientConfig, path: str | None = None) -> str:
    """Writes ``config`` (0600, atomically) and returns the path written."""
    path = path or config.path or default_config_path()
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    data: dict[str, Any] = {"master": config.master, "master_http": config.master_http}
    if config.keys is not None:
        if config.keys.server:
            data["master_public_key"] = config.keys.server.decode("ascii")
        data.update(
                    client_public_key=config.keys.public.decode("ascii"),
                    client_secret_key=config.keys.secret.decode("ascii"))
    data["http_token"] = config.http_token
    data["http_ca"] = config.http_ca
    data["keys_dir"] = config.keys_dir
    header = "# Tepui client configuration (written by `tepui up`); holds a secret key: keep it 0600.\n"
    write_atomic(path, header + yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False))
    return path
