"""The client configuration's ``client_keys`` path, as docs/protocol.md ("CURVE keys from plain
ZeroMQ") tells a client author in another language to read it: a relative directory is relative
to the configuration file's own directory, never to the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tepui.sdk.config import load_client_config
from tepui.sdk.keys import init_store, issue, load_client_keys


def test_a_relative_client_keys_directory_is_read_beside_the_config_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_store(str(tmp_path / "store"))
    _, directory = issue(str(tmp_path / "store"), "etl", "framework", out=str(tmp_path / "cluster" / "keys" / "etl"))
    config = tmp_path / "cluster" / "config.yaml"
    config.write_text("master: 127.0.0.1:5050\nclient_keys: keys/etl\n")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keys").mkdir(parents=True)  # a keys/etl the current directory does not have
    monkeypatch.chdir(elsewhere)
    assert load_client_config(str(config)).keys == load_client_keys(directory)


def test_a_zk_master_may_come_with_the_client_key_pair_alone_and_then_takes_the_published_master_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zmq

    from tepui.sdk.config import ConfigError

    monkeypatch.delenv("TEPUI_MASTER", raising=False)
    public, secret = (key.decode() for key in zmq.curve_keypair())
    path = tmp_path / "config.yaml"
    # Quoted: a Z85 key may begin with a character YAML reads as syntax ("|", "&", "*", "{" ...).
    path.write_text(f'master: zk://10.0.0.1:2181/tepui\nclient_public_key: "{public}"\nclient_secret_key: "{secret}"\n')
    keys = load_client_config(str(path)).keys
    assert keys is not None and keys.public == public.encode() and keys.server == b""
    path.write_text(f'master: 10.0.0.1:5050\nclient_public_key: "{public}"\nclient_secret_key: "{secret}"\n')
    with pytest.raises(ConfigError, match="master_public_key missing"):
        load_client_config(str(path))
