"""The masters of a ``zk://`` address, read now and synchronously: which one serves, its HTTP
URL, and every contender — for the CLI (``tepui state`` and every ``--http`` command) and for
the client configuration (``master: zk://...``), which run no reactor and ask once.

Why a short-lived kazoo session per question rather than following: a CLI call lives for one
request; a connection to one ZooKeeper server and two reads cost a few milliseconds on a LAN,
far less than guessing wrong and being redirected (a standby answers 307, and urllib does not
follow a 307 for a POST). Every failure is a :class:`NoServingMaster` whose message names the
URL and what to do, so commands print it as it is.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tepui.sdk.config import ConfigError
from tepui.sdk.leadership import MASTERS, LeaderInfo, contenders, decode_info
from tepui.sdk.zookeeper import ZkUnavailable, connect, parse_zk_url

__all__ = ["MasterEntry", "NoServingMaster", "leader_http", "list_masters", "serving_master"]

LOOKUP_TIMEOUT = 5.0  # seconds to reach a ZooKeeper server


class NoServingMaster(ConfigError):
    """No master can be named: ZooKeeper does not answer, or no master serves under the path."""


@dataclass(frozen=True)
class MasterEntry:
    """One contender under ``<path>/masters``, in election order (the first leads once it serves)."""

    node: str  # json.info_<seq>
    info: LeaderInfo | None  # None: its data could not be read as a LeaderInfo
    leading: bool  # the first node, with its epoch published: the one clients follow

    @property
    def role(self) -> str:
        if self.leading:
            return "leading"
        return "standby"


def list_masters(url: str, timeout: float = LOOKUP_TIMEOUT) -> list[MasterEntry]:
    """Every master contender under ``<path>/masters`` of ``url``, in election order."""
    from kazoo.exceptions import NoNodeError

    parsed = parse_zk_url(url)
    path = parsed.child(MASTERS)
    with _quiet_kazoo():
        return _read(url, path, timeout, NoNodeError)


def _read(url: str, path: str, timeout: float, no_node: type[Exception]) -> list[MasterEntry]:
    client = _connect(url, timeout)
    try:
        try:
            names = contenders(client.get_children(path))
        except no_node:
            return []
        entries: list[MasterEntry] = []
        for name in names:
            try:
                data, _stat = client.get(posixpath.join(path, name))
            except no_node:
                continue  # it just left
            info = decode_info(data, name)
            leading = not entries and info is not None and info.epoch > 0
            entries.append(MasterEntry(name, info, leading))
        return entries
    finally:
        client.stop()
        client.close()


def serving_master(url: str, timeout: float = LOOKUP_TIMEOUT) -> LeaderInfo:
    """The serving master of ``url``; :class:`NoServingMaster` says why there is none."""
    return _leader(url, list_masters(url, timeout))


def leader_http(url: str, timeout: float = LOOKUP_TIMEOUT) -> str:
    """The serving master's HTTP base URL (its published ``http``)."""
    info = serving_master(url, timeout)
    if not info.http:
        raise NoServingMaster(f"the master {info.id} leading {url} publishes no HTTP URL; give its HTTP address "
                              "with --http or $TEPUI_MASTER_HTTP")
    return info.http


def _leader(url: str, entries: list[MasterEntry]) -> LeaderInfo:
    if entries and entries[0].leading and entries[0].info is not None:
        return entries[0].info
    if not entries:
        raise NoServingMaster(f"no master runs under {url}: {parse_zk_url(url).child(MASTERS)} has no contenders. "
                              f"Start masters with `tepui master --zk {url}` (or `tepui up --ha`), or check the URL's "
                              "path")
    first = entries[0].info.id if entries[0].info is not None else entries[0].node
    raise NoServingMaster(f"no master serves under {url} yet: {len(entries)} running, and the first ({first}) has "
                          "not published its epoch (it is being elected or is recovering its registry). Try again "
                          f"in a few seconds; `tepui state --http {url}` lists the masters")


@contextlib.contextmanager
def _quiet_kazoo() -> Iterator[None]:
    """A command that configured no logging (the CLI) prints kazoo's own lines — one per failed
    connection attempt — through Python's last-resort handler; the NoServingMaster message says
    it all, once."""
    kazoo = logging.getLogger("kazoo")
    if logging.getLogger().handlers or kazoo.handlers:
        yield
        return
    level = kazoo.level
    kazoo.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kazoo.setLevel(level)


def _connect(url: str, timeout: float) -> Any:
    try:
        return connect(url, connect_timeout=timeout)
    except ZkUnavailable as exc:
        raise NoServingMaster(f"cannot find the master of {url}: {exc}; or give the master's HTTP address with "
                              "--http or $TEPUI_MASTER_HTTP") from None
