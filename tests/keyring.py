"""CURVE keys for test clusters, made the way ``tepui up`` makes them (sdk/keys.py): a key store,
one agent key per agent, a ``local`` client key (principal ``local``, any role) and a client
configuration file naming the master, its HTTP API and the keys. Frameworks started with
``TEPUI_CONFIG`` pointing at that file find everything there, exactly as after ``tepui up``.
A framework that must subscribe as another principal gets its own key: :meth:`config_for`."""

from __future__ import annotations

from pathlib import Path

from tepui.sdk.config import ClientConfig, write_client_config
from tepui.sdk.keys import init_store, issue, load_client_keys


class TestKeys:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, store: Path, agents: int, master: str, http: str, token: str | None = None) -> None:
        self.store, self.master, self.http, self.token = store, master, http, token
        init_store(str(store))
        self.agent_dirs = {i: issue(str(store), f"agent-{i}", "agent")[1] for i in range(1, agents + 1)}
        self.config = self.config_for("local", kind="client", roles=("*",))

    def agent_dir(self, index: int) -> str:
        if index not in self.agent_dirs:
            self.agent_dirs[index] = issue(str(self.store), f"agent-{index}", "agent")[1]
        return self.agent_dirs[index]

    def config_for(self, principal: str, kind: str = "framework", roles: tuple[str, ...] = ()) -> Path:
        """A client configuration with a key of ``principal`` (issued on first use)."""
        path = self.store / f"config-{principal}.yaml"
        if not path.exists():
            _entry, directory = issue(str(self.store), principal, kind, principal, roles)
            write_client_config(ClientConfig(master=self.master, master_http=self.http,
                                             keys=load_client_keys(directory), http_token=self.token), str(path))
        return path
