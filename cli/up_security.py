"""The security set-up of ``tepui up``: everything a local cluster needs, made on its own.

In the state dir: a key store (``keys/``: the master's key pair and allow list), one agent key
per agent, a ``local`` client key (principal ``local``, any role) and an HTTP token. Everything is
made once and reused on the next ``tepui up`` (clients keep working across restarts). Then the
client configuration is written where clients look by default (``$TEPUI_CONFIG``, else
``~/.config/tepui/config.yaml``), so ``tepui run``, ``tepui state``, the SDK drivers and the
examples need no flags.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

from tepui.sdk.config import ClientConfig, default_config_path, write_client_config
from tepui.sdk.keys import init_store, issue, load_client_keys, read_allow_list, write_atomic

LOCAL_CLIENT = "local"


@dataclass
class LocalSecurity:
    keys_dir: str
    config_path: str
    token_file: str
    master_args: list[str] = field(default_factory=list)
    agent_dirs: dict[int, str] = field(default_factory=dict)

    def agent_args(self, index: int) -> list[str]:
        # The token too: an agent's files API serves sandbox files only to token holders
        # (the master's files proxy, so `tepui logs` works), and to no one without a token file.
        return ["--keys", self.agent_dirs[index], "--http-token-file", self.token_file]


def _client_dir(keys_dir: str, name: str, kind: str, principal: str, roles: tuple[str, ...]) -> str:
    """The client directory of key ``name``, issued if the allow list has no such key yet."""
    directory = os.path.join(keys_dir, "issued", name)
    entry = read_allow_list(os.path.join(keys_dir, "allow.yaml")).named(name)
    if entry is not None and not entry.revoked and os.path.exists(os.path.join(directory, "client.key_secret")):
        return directory
    if entry is not None:
        # Revoked, or its files are gone: a fresh key under a fresh name, same principal.
        suffix = 2
        while read_allow_list(os.path.join(keys_dir, "allow.yaml")).named(f"{name}-{suffix}") is not None:
            suffix += 1
        name = f"{name}-{suffix}"
        directory = os.path.join(keys_dir, "issued", name)
    issue(keys_dir, name, kind, principal, roles, directory)
    return directory


def _master_supports(flag: str) -> bool:
    """Whether ``tepui master`` has ``flag`` (the HTTP token flag comes with the HTTP API work)."""
    from tepui.cli.main import master

    return any(flag in getattr(param, "opts", ()) for param in master.params)


def prepare(state_dir: str, port: int, http_port: int, agents: int, master: str | None = None) -> LocalSecurity:
    """``master``: what the client configuration names instead of ``127.0.0.1:PORT`` — a
    ``zk://`` address for ``tepui up --ha``, and then no ``master_http`` either: clients ask
    ZooKeeper which master serves (sdk/config.py), as any one of the three may be a standby."""
    keys_dir = os.path.join(state_dir, "keys")
    init_store(keys_dir)
    token_file = os.path.join(state_dir, "http-token")
    if not os.path.exists(token_file):
        write_atomic(token_file, secrets.token_urlsafe(32) + "\n")
    with open(token_file) as f:
        token = f.read().strip()
    security = LocalSecurity(keys_dir, default_config_path(), token_file, ["--keys", keys_dir])
    if _master_supports("--http-token-file"):
        security.master_args += ["--http-token-file", token_file]
    for i in range(1, agents + 1):
        security.agent_dirs[i] = _client_dir(keys_dir, f"agent-{i}", "agent", f"agent-{i}", ())
    client = load_client_keys(_client_dir(keys_dir, LOCAL_CLIENT, "client", LOCAL_CLIENT, ("*",)))
    write_client_config(ClientConfig(master=master or f"127.0.0.1:{port}",
                                     master_http=None if master else f"http://127.0.0.1:{http_port}",
                                     keys=client, http_token=token, keys_dir=os.path.abspath(keys_dir)),
                        security.config_path)
    return security
