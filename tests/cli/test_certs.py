"""``tepui certs``: init, issue, revoke, list; and the client configuration format."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tepui.cli.main import cli
from tepui.sdk.config import ConfigError, load_client_config, write_client_config, ClientConfig
from tepui.sdk.keys import load_client_keys, load_server_keys, read_allow_list


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_init_issue_revoke_list(tmp_path: Path) -> None:
    store = str(tmp_path / "keys")
    out = run("certs", "init", store)
    master = load_server_keys(store)
    assert master.public.decode() in out
    assert stat.S_IMODE(os.stat(os.path.join(store, "master.key_secret")).st_mode) == 0o600
    run("certs", "init", store)  # idempotent: the master keeps its key pair
    assert load_server_keys(store).public == master.public

    run("certs", "issue", "--keys", store, "--agent", "node-1")
    run("certs", "issue", "--keys", store, "--framework", "etl", "--principal", "data", "--roles", "batch,prod",
        "--out", str(tmp_path / "etl"))
    agent = load_client_keys(os.path.join(store, "issued", "node-1"))
    assert agent.server == master.public  # the client directory carries the master's public key
    etl = load_client_keys(str(tmp_path / "etl"))
    allow = read_allow_list(os.path.join(store, "allow.yaml"))
    assert [(e.name, e.kind, e.principal, e.roles, e.revoked) for e in allow.entries] == [
        ("node-1", "agent", "node-1", (), False), ("etl", "framework", "data", ("batch", "prod"), False)]
    assert allow.active(etl.public.decode()).name == "etl"  # type: ignore[union-attr]

    run("certs", "revoke", "--keys", store, "node-1")
    assert read_allow_list(os.path.join(store, "allow.yaml")).active(agent.public.decode()) is None

    listing = run("certs", "list", "--keys", store)
    lines = listing.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "PRINCIPAL", "ROLES", "STATUS", "CREATED", "PUBLIC", "KEY"]
    assert lines[1].split()[:5] == ["node-1", "agent", "node-1", "*", "revoked"]
    assert lines[2].split()[:5] == ["etl", "framework", "data", "batch,prod", "active"]
    assert etl.public.decode() in listing  # Z85 keys hold [ and ]: printed as they are, not as markup


def test_mistakes_get_clear_errors(tmp_path: Path) -> None:
    store = str(tmp_path / "keys")
    result = CliRunner().invoke(cli, ["certs", "issue", "--keys", store, "--agent", "a"])
    assert result.exit_code != 0 and "tepui certs init" in result.output
    run("certs", "init", store)
    run("certs", "issue", "--keys", store, "--agent", "a")
    result = CliRunner().invoke(cli, ["certs", "issue", "--keys", store, "--agent", "a"])
    assert result.exit_code != 0 and "exists already" in result.output
    result = CliRunner().invoke(cli, ["certs", "issue", "--keys", store, "--agent", "b", "--framework", "c"])
    assert result.exit_code != 0 and "exactly one" in result.output
    result = CliRunner().invoke(cli, ["certs", "revoke", "--keys", store, "nobody"])
    assert result.exit_code != 0 and "known: a" in result.output
    result = CliRunner().invoke(cli, ["certs", "issue", "--keys", store, "--agent", "../x"])
    assert result.exit_code != 0 and "bad key name" in result.output


def test_client_configuration_round_trip_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = str(tmp_path / "keys")
    run("certs", "init", store)
    run("certs", "issue", "--keys", store, "--client", "me")
    keys = load_client_keys(os.path.join(store, "issued", "me"))
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("TEPUI_CONFIG", str(path))
    assert load_client_config() == ClientConfig()  # no file: no keys, plain connections
    write_client_config(ClientConfig(master="10.0.0.1:5050", master_http="http://10.0.0.1:5080", keys=keys,
                                     http_token="t0ken"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    config = load_client_config()
    assert (config.master, config.master_http, config.keys, config.http_token) == (
        "10.0.0.1:5050", "http://10.0.0.1:5080", keys, "t0ken")
    # A key directory instead of inline keys.
    path.write_text(yaml.safe_dump({"master": "m:1", "client_keys": os.path.join(store, "issued", "me")}))
    assert load_client_config().keys == keys
    path.write_text("master_public_key: abc\n")
    with pytest.raises(ConfigError, match="client_public_key, client_secret_key missing"):
        load_client_config()
    path.write_text("master_public_key: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read the client configuration"):
        load_client_config()


def test_master_and_agent_refuse_to_start_without_keys(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["master", "--port", "0", "--http-port", "0"])
    assert result.exit_code != 0 and "tepui certs init" in str(result.exception or result.output)
    result = CliRunner().invoke(cli, ["agent", "--work-dir", str(tmp_path / "w")])
    assert result.exit_code != 0 and "tepui certs issue --agent" in str(result.exception or result.output)
    result = CliRunner().invoke(cli, ["agent", "--work-dir", str(tmp_path / "w"), "--keys", str(tmp_path / "none")])
    assert result.exit_code != 0 and "client.key_secret" in str(result.exception or result.output)


def test_certs_without_keys_finds_the_store_of_tepui_up_with_another_state_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tepui.cli.up_security import prepare

    monkeypatch.setenv("TEPUI_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.delenv("TEPUI_KEYS", raising=False)
    prepare(str(tmp_path / "state"), 5050, 5080, agents=1)  # what `tepui up --state-dir .../state` does
    assert load_client_config().keys_dir == str(tmp_path / "state" / "keys")
    names = [line.split()[0] for line in run("certs", "list").splitlines()[1:]]
    assert names == ["agent-1", "local"]


def test_certs_without_a_store_names_what_it_tried_and_how_to_name_the_right_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"master": "127.0.0.1:5050", "keys_dir": "gone/keys"}))
    monkeypatch.setenv("TEPUI_CONFIG", str(config))
    monkeypatch.delenv("TEPUI_KEYS", raising=False)
    result = CliRunner().invoke(cli, ["certs", "list"])
    assert result.exit_code == 1
    assert (f"no key store at {tmp_path / 'gone' / 'keys'} (keys_dir in the client configuration {config}); "
            "pass --keys <state-dir>/keys") in result.output
    monkeypatch.setenv("TEPUI_KEYS", str(tmp_path / "elsewhere"))  # the environment comes before the configuration
    result = CliRunner().invoke(cli, ["certs", "revoke", "node-1"])
    assert result.exit_code == 1 and f"no key store at {tmp_path / 'elsewhere'} ($TEPUI_KEYS)" in result.output
