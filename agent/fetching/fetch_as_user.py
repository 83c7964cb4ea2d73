"""Fetching as the task's user: a child process that gives up root before it touches anything.

Mesos runs its fetcher as the task's user, so that a task can fetch only what its user may read.
An agent running as root does the same here: :func:`fetch_as` (in a worker thread of the agent)
hands the sandbox and the user's cache directory to the user, then runs
``python -m tepui.agent.fetching.fetch_as_user`` with the request on stdin. The child drops to the user's
uid, gid and supplementary groups (``setgroups``, ``setresgid``, ``setresuid``, and checks that
root cannot be taken back) before it opens any URI, sandbox or cache file, runs the ordinary
:class:`~tepui.agent.fetching.fetcher.Fetcher` and writes the outcome on stdout; its log lines go to the
agent's stderr, so they land in the agent's log.

Why a child process and not threads or ``seteuid``: credentials belong to the whole process on
Linux (a thread that changes them changes them for the agent, its other fetches and its task
launches), and a fork of a threaded agent could inherit locks held by other threads. Why it
drops privileges itself rather than being exec'd as the user: it runs whatever interpreter the
agent runs, which the task's user need not be able to read, and a process that changed its
uid is not dumpable, so other processes of that user (its tasks) cannot read its memory or
environment. It costs one interpreter start (a few hundred ms) per task that has URIs.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tepui.agent.fetching.fetch_rules import FetchError, FetchResult
from tepui.sdk.protocol.values import CommandURI

if TYPE_CHECKING:
    from tepui.agent.containerizers.processes import TaskUser

# What the child keeps of the agent's environment: where programs and certificates are, proxies.
PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "http_proxy",
                      "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


class FetchRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    uris: list[CommandURI]
    sandbox: str
    cache_dir: str  # the user's own: <cache>/users/<uid>
    cache_limit_bytes: int
    max_download_bytes: int
    timeout: float
    allowed_dirs: list[str]
    user: str
    uid: int
    gid: int
    groups: list[int]
    log_level: str = "info"


class FetchReply(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    results: list[FetchResult] = []
    error: str | None = None  # a FetchError's sentence


def must_switch(user: TaskUser) -> bool:
    """Whether fetching for ``user`` needs a child of its own: only a root agent can switch, and
    only a user other than root needs it."""
    return os.geteuid() == 0 and user.uid != 0


def fetch_as(fetcher: Any, uris: Sequence[CommandURI], sandbox: str, user: TaskUser) -> list[FetchResult]:
    """Blocking (a worker thread): fetches ``uris`` into ``sandbox`` as ``user`` with the settings
    of ``fetcher`` (a :class:`~tepui.agent.fetching.fetcher.Fetcher`); raises FetchError."""
    shown = f"the task's URIs as user {user.name!r}"
    try:
        _hand_over(sandbox, user)
        cache_dir = user_cache_dir(fetcher.cache_dir, user)
    except OSError as exc:
        raise FetchError(f"cannot fetch {shown}: preparing the sandbox or the user's cache failed "
                         f"({exc.strerror or exc})") from None
    request = FetchRequest(
        uris=list(uris), sandbox=sandbox, cache_dir=cache_dir, cache_limit_bytes=fetcher.cache_limit_bytes,
        max_download_bytes=fetcher.max_download_bytes, timeout=fetcher.timeout,
        allowed_dirs=list(fetcher.allowed_dirs), user=user.name, uid=user.uid, gid=user.gid,
        groups=os.getgrouplist(user.name, user.gid), log_level=_level())
    env = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
    done = subprocess.run([sys.executable, "-m", "tepui.agent.fetching.fetch_as_user"], input=msgspec.json.encode(request),
                          stdout=subprocess.PIPE, stderr=None, env=env, cwd="/", check=False)
    try:
        reply = msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=FetchReply)
    except (IndexError, msgspec.DecodeError, msgspec.ValidationError):
        raise FetchError(f"cannot fetch {shown}: the fetcher process ended with status {done.returncode} "
                         "without an answer (see the agent's log)") from None
    if reply.error is not None:
        raise FetchError(reply.error)
    return list(reply.results)


def _hand_over(sandbox: str, user: TaskUser) -> None:
    """The (new, agent-made) sandbox directory becomes the user's, so the child can write in it."""
    os.makedirs(sandbox, exist_ok=True)
    if not stat.S_ISDIR(os.lstat(sandbox).st_mode):
        raise OSError(f"{sandbox} is not a directory")
    os.chown(sandbox, user.uid, user.gid, follow_symlinks=False)


def user_cache_dir(cache_root: str, user: TaskUser) -> str:
    """``<cache_root>/users/<uid>``: 0700 and the user's own, so that no user reads what another
    fetched; ``users`` is 0711 (reachable, not listable)."""
    users = os.path.join(cache_root, "users")
    os.makedirs(users, exist_ok=True)
    os.chmod(users, 0o711)
    path = os.path.join(users, str(user.uid))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{path} is not a directory")
    if (st.st_uid, st.st_gid) != (user.uid, user.gid):
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def _level() -> str:
    return logging.getLevelName(logging.getLogger("tepui").getEffectiveLevel()).lower()


# --- the child ----------------------------------------------------------------------------------


def drop_privileges(uid: int, gid: int, groups: Sequence[int]) -> None:
    """Becomes ``uid``/``gid`` with ``groups`` for good (real, effective and saved ids)."""
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError(f"the process still has ids {os.getresuid()}/{os.getresgid()}")
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise OSError("root could be taken back after dropping privileges")


def load_what_fetching_needs() -> None:
    """Imports, as root, every module a fetch may need: once the child is the task's user, the
    agent's interpreter and its standard library may be out of its reach (a Python installed
    under /root, say), and these are imported lazily, some of them C extensions: compressions
    for archives, the codecs of host names and zip member names, TLS, the HTTP header parser
    (``test_as_root_http_downloads_and_every_archive_kind_work_as_the_task_user`` runs them all)."""
    import bz2  # noqa: F401
    import email.feedparser  # noqa: F401
    import email.parser  # noqa: F401
    import encodings.idna  # noqa: F401
    import gzip  # noqa: F401
    import http.client  # noqa: F401
    import lzma  # noqa: F401
    import ssl
    import stringprep  # noqa: F401
    import tarfile  # noqa: F401
    import unicodedata  # noqa: F401
    import urllib.request  # noqa: F401
    import zipfile  # noqa: F401
    import zlib  # noqa: F401

    for codec in ("idna", "cp437", "latin-1", "ascii", "utf-8"):  # host names, zip member names, headers
        "tepui.example".encode(codec)
    ssl.create_default_context()


def main() -> None:
    request = msgspec.json.decode(sys.stdin.buffer.read(), type=FetchRequest)
    from tepui.agent.fetching.fetcher import Fetcher
    from tepui.sdk.shell import configure_logging

    configure_logging(request.log_level, "agent")
    fetcher = Fetcher(None, request.cache_dir, cache_limit_bytes=request.cache_limit_bytes,
                      max_download_bytes=request.max_download_bytes, timeout=request.timeout,
                      allowed_dirs=request.allowed_dirs, user_name=request.user)
    load_what_fetching_needs()
    try:
        drop_privileges(request.uid, request.gid, request.groups)
    except OSError as exc:
        reply = FetchReply(error=f"cannot fetch the task's URIs: switching to user {request.user!r} failed ({exc})")
    else:
        try:
            reply = FetchReply(results=fetcher.fetch_blocking(request.uris, request.sandbox))
        except FetchError as exc:
            reply = FetchReply(error=str(exc))
    sys.stdout.buffer.write(msgspec.json.encode(reply) + b"\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
