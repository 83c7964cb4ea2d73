"""The agent's fetcher: a task's ``command.uris`` land in its sandbox before the task starts.

Mesos semantics (``docs/fetcher.md``, ``src/launcher/fetcher.cpp``):

- Schemes: ``http://``, ``https://`` (redirects followed), ``file://`` and plain absolute paths
  (copied). Anything else is refused with the scheme named.
- Who fetches (Mesos runs its fetcher as the task's user): an agent running as root fetches a
  task's URIs in a child process that becomes the task's user before it reads or writes anything
  (``fetch_as_user.py``), into a sandbox handed to that user; so a task can fetch only what its
  user may read, and a file only root may read fails with "permission denied".
- The file is saved as ``output_file`` when given, else as the basename of the URI's path.
  Beyond Mesos, ``output_file`` may be a relative path (``map/3/count.txt``, how the batch
  framework's upstream outputs arrive): its directories are created, and must resolve inside the
  sandbox; ``..``, absolute paths and empty parts are refused.
- ``extract`` (the default) unpacks ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``
  and ``.zip`` into the sandbox directory itself and keeps the archive; ``executable`` makes the
  file mode 0755 and is never extracted.
- ``cache``: the content is kept under the agent's cache directory, keyed by a hash of the URI,
  and a later fetch of the same URI is served from there without touching the network.
  **The cache trusts the URI, exactly as Mesos's does: an entry is never revalidated**, so a
  URI whose content changes must not be fetched with ``cache=True`` (put a version in the URI).
  Entries are evicted least-recently-used first to stay under ``cache_limit_bytes``; an item
  larger than the whole limit is fetched but not cached. One agent owns one cache directory.

Beyond Mesos, because a task must not read the agent's host through its URIs: local files
(``file://`` and absolute paths) come only from the directories the operator allows
(``allowed_dirs``, ``tepui agent --fetcher-allowed-dir DIR``; none by default, so no local file at
all). The path is resolved (links, ``..``) and checked, opened without following a last link,
and the file really opened (``/proc/self/fd``) is checked again, so a link swapped in between
cannot lead elsewhere. The cache is per user (``<cache_dir>/users/<uid>``, 0700, owned by that
user; the limit applies to each), so one user's fetches are never served to another.

And because a sandbox must never be a door out of itself: archive members with
absolute paths, ``..`` components, links leading outside the sandbox, or device files are
refused before anything is written (and tar extraction also runs through ``tarfile``'s
``data`` filter, which checks real paths member by member); a download or an extraction larger
than ``max_download_bytes`` fails; a download goes to a temporary file in the sandbox and is
renamed only when complete, so no partial file ever carries the final name.

Why threads: downloads and extraction block, so :meth:`Fetcher.fetch` runs
:meth:`Fetcher.fetch_blocking` in the reactor's thread pool (DESIGN §3) and its Deferred fires
on the reactor thread. ``timeout`` bounds each network operation (connect, each read), not the
whole download, the way curl's ``--connect-timeout``/``--speed-time`` pair does.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import http.client
import logging
import lzma
import os
import socket
import ssl
import stat
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

from twisted.internet import defer, threads

from tepui.agent.fetching.fetch_as_user import fetch_as, must_switch
from tepui.agent.containerizers.processes import TaskUser
from tepui.sdk.protocol.values import CommandURI

__all__ = [
    "CacheEntry", "FetchError", "FetchResult", "Fetcher", "archive_kind", "cache_key",
    "link_problem", "member_problem", "output_name", "plan_eviction", "redact", "uri_scheme",
]

log = logging.getLogger("tepui.agent.fetching.fetcher")

from tepui.agent.fetching.fetch_rules import (  # noqa: F401  (the fetcher's vocabulary, re-exported)
    CHUNK,
    CacheEntry,
    FetchError,
    FetchResult,
    HAS_DATA_FILTER,
    PROGRESS_EVERY,
    TAR_SUFFIXES,
    TEMP_PREFIX,
    _KEY_LENGTH,
    _human,
    _zip_mode,
    archive_kind,
    cache_key,
    inside,
    link_problem,
    local_file_problem,
    local_path,
    member_problem,
    name_problem,
    output_name,
    plan_eviction,
    redact,
    tar_member_problem,
    top_directory,
    uri_scheme,
    zip_member_problem,
)

def _reason(exc: BaseException, timeout: float) -> str:
    """A network failure in a few words."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"the host name could not be resolved ({exc.strerror})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, http.client.InvalidURL):
        return f"the URL is invalid ({exc})"
    if isinstance(exc, http.client.IncompleteRead):
        return "the server closed the connection before the end of the body"
    if isinstance(exc, http.client.HTTPException):
        return f"the server sent an invalid HTTP response ({type(exc).__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only (urllib's stock handler also follows ftp)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a non-HTTP URL {redact(newurl)!r}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# --- the fetcher ------------------------------------------------------------------------------


class Fetcher:
    def __init__(self, reactor: Any, cache_dir: str, cache_limit_bytes: int = 2 * 1024**3,
                 max_download_bytes: int = 10 * 1024**3, timeout: float = 60.0,
                 allowed_dirs: Sequence[str] = (), user_name: str | None = None) -> None:
        """``allowed_dirs``: where local files may come from (none: no local file at all).
        ``user_name``: whose privileges this fetcher runs with, when that is a task's user (for
        messages)."""
        self._reactor = reactor
        self.cache_dir = cache_dir
        self.allowed_dirs = tuple(allowed_dirs)
        self.user_name = user_name
        self.cache_limit_bytes = cache_limit_bytes
        self.max_download_bytes = max_download_bytes
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_HttpOnlyRedirects)
        self._cache_ready = False
        self._cache_ready_lock = threading.Lock()

    # -- entry points --

    def fetch(self, uris: Sequence[CommandURI], sandbox: str,
              user: TaskUser | None = None) -> defer.Deferred[list[FetchResult]]:
        """Fetches in the reactor's thread pool, as ``user`` (the task's; None: the agent's own)
        when the agent can and must switch to it; fires on the reactor thread with the results
        in the order of ``uris``, or errbacks with the first FetchError."""
        pool = self._reactor.getThreadPool()
        if user is not None and must_switch(user):
            return threads.deferToThreadPool(self._reactor, pool, fetch_as, self, list(uris), sandbox, user)
        return threads.deferToThreadPool(self._reactor, pool, self.fetch_blocking, list(uris), sandbox)

    def fetch_blocking(self, uris: Sequence[CommandURI], sandbox: str) -> list[FetchResult]:
        """Fetches each URI in order into ``sandbox`` (created if missing); raises FetchError on
        the first failure, with whatever was fetched before it left in place."""
        try:
            os.makedirs(sandbox, exist_ok=True)
        except OSError as exc:
            raise FetchError(f"cannot create the sandbox {sandbox!r}: {_reason(exc, self.timeout)}") from exc
        results = []
        for uri in uris:
            shown = redact(uri.value)
            started = time.monotonic()
            try:
                result = self._fetch_one(uri, shown, sandbox)
            except FetchError as exc:
                log.warning("event=fetch_failed uri=%s error=%r", shown, str(exc))
                raise
            except Exception as exc:  # disk full, permissions, a library surprise: still one sentence
                log.exception("event=fetch_failed uri=%s", shown)
                raise FetchError(f"could not fetch {shown!r}: {_reason(exc, self.timeout)}") from exc
            log.info("event=fetched uri=%s path=%s bytes=%d from_cache=%s seconds=%.3f", shown, result.path,
                     result.bytes, result.from_cache, time.monotonic() - started)
            results.append(result)
        return results

    # -- one URI --

    def _fetch_one(self, uri: CommandURI, shown: str, sandbox: str) -> FetchResult:
        scheme = uri_scheme(uri.value)
        name = output_name(uri)
        final = os.path.join(sandbox, name)
        if "/" in name:
            self._make_parents(final, name, shown, sandbox)
        if scheme == "file":
            self._allowed_local(uri.value, shown)  # before the cache: a hit must not bypass the rule
        from_cache = False
        if uri.cache:
            tmp, size, from_cache = self._through_cache(uri.value, shown, scheme, sandbox)
        else:
            tmp, size = self._retrieve(uri.value, shown, scheme, sandbox)
        try:
            os.chmod(tmp, 0o755 if uri.executable else 0o644)
            os.replace(tmp, final)
        except BaseException:
            _unlink(tmp)
            raise
        path = final
        kind = archive_kind(name) if uri.extract and not uri.executable else None
        if kind == "tar":
            path = self._extract_tar(final, name, shown, sandbox)
        elif kind == "zip":
            path = self._extract_zip(final, name, shown, sandbox)
        return FetchResult(uri=uri.value, path=path, bytes=size, from_cache=from_cache)

    def _make_parents(self, final: str, name: str, shown: str, sandbox: str) -> None:
        """Creates the directories of a nested ``output_file``. Checked against the sandbox's real
        path before and after: a link an earlier URI's archive left (archives' links may point
        only inside the sandbox, but a directory may be one) must not take the file elsewhere."""
        root = os.path.realpath(sandbox)
        parent = os.path.dirname(final)
        for _ in range(2):
            if not inside(os.path.realpath(parent), root):
                raise FetchError(f"cannot fetch {shown!r}: output_file {name!r} leads outside the sandbox "
                                 "through a link")
            os.makedirs(parent, exist_ok=True)

    def _retrieve(self, value: str, shown: str, scheme: str, directory: str) -> tuple[str, int]:
        """Downloads or copies into a new temporary file in ``directory``; returns (path, size).
        The temporary file is removed on any failure."""
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                if scheme == "file":
                    size = self._copy_local(value, shown, out)
                else:
                    size = self._download(value, shown, out)
            return tmp, size
        except BaseException:
            _unlink(tmp)
            raise

    def _allowed_local(self, value: str, shown: str, real: str | None = None) -> str:
        """The real path of a local file the rule allows (``real``: where it really is, when
        known); FetchError naming the rule otherwise."""
        path = local_path(value)
        real = real or os.path.realpath(path)
        problem = local_file_problem(shown, path, real, [os.path.realpath(d) for d in self.allowed_dirs])
        if problem is not None:
            raise FetchError(problem)
        return real

    def _copy_local(self, value: str, shown: str, out: BinaryIO) -> int:
        real = self._allowed_local(value, shown)
        try:
            # Not through a last link, and without blocking on a FIFO; then what was really
            # opened is checked against the rule again (a link swapped in since realpath).
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except FileNotFoundError:
            raise FetchError(f"cannot fetch {shown!r}: no such file") from None
        except PermissionError:
            whose = f" (the fetcher runs as the task's user {self.user_name!r})" if self.user_name else ""
            raise FetchError(f"cannot fetch {shown!r}: permission denied{whose}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FetchError(f"cannot fetch {shown!r}: it changed into a link while it was being opened") from None
            raise
        with os.fdopen(fd, "rb") as src:
            opened = os.readlink(f"/proc/self/fd/{fd}")
            if opened != real:
                self._allowed_local(value, shown, opened)
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise FetchError(f"cannot fetch {shown!r}: it is a directory, not a file")
            if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
                raise FetchError(f"cannot fetch {shown!r}: it is not a regular file")
            self._check_size(st.st_size, shown)
            os.set_blocking(fd, True)
            return self._pump(src, out, shown, None)

    def _download(self, value: str, shown: str, out: BinaryIO) -> int:
        request = _request(value)
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise FetchError(f"could not fetch {shown!r}: the server answered HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise FetchError(f"could not fetch {shown!r}: {_reason(exc, self.timeout)}") from None
        except ValueError as exc:  # e.g. a port that is not a number
            raise FetchError(f"cannot fetch {shown!r}: the URL is invalid ({exc})") from None
        with response:
            length = response.headers.get("Content-Length")
            declared = int(length) if length and length.strip().isdigit() else None
            if declared is not None:
                self._check_size(declared, shown)
            try:
                size = self._pump(response, out, shown, declared)
            except (OSError, http.client.HTTPException) as exc:
                raise FetchError(f"could not fetch {shown!r}: {_reason(exc, self.timeout)}") from None
        if declared is not None and size != declared:
            raise FetchError(f"could not fetch {shown!r}: the connection ended after {size} of {declared} bytes")
        return size

    def _check_size(self, size: int, shown: str) -> None:
        if size > self.max_download_bytes:
            raise FetchError(f"cannot fetch {shown!r}: it is {_human(size)}, more than the limit of "
                             f"{_human(self.max_download_bytes)}")

    def _pump(self, src: Any, out: BinaryIO, shown: str, declared: int | None) -> int:
        """Copies ``src`` to ``out``, failing as soon as the size bound is passed, and logs
        progress now and then so that a long download is visibly alive."""
        total, last = 0, time.monotonic()
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                return total
            total += len(chunk)
            if total > self.max_download_bytes:
                raise FetchError(f"could not fetch {shown!r}: it grew past the limit of "
                                 f"{_human(self.max_download_bytes)}")
            out.write(chunk)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY:
                last = now
                log.info("event=fetch_progress uri=%s bytes=%d total=%s", shown, total, declared or "unknown")

    # -- extraction --

    def _too_big_to_extract(self, total: int, name: str, shown: str) -> FetchError:
        return FetchError(f"refusing to extract {name} from {shown!r}: it unpacks to {_human(total)}, more than "
                          f"the limit of {_human(self.max_download_bytes)}")

    def _extract_tar(self, archive: str, name: str, shown: str, sandbox: str) -> str:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                total = 0
                for member in members:
                    problem = tar_member_problem(member)
                    if problem is not None:
                        raise FetchError(f"refusing to extract {name} from {shown!r}: its member "
                                         f"{member.name!r} {problem}")
                    total += member.size if member.isfile() else 0
                if total > self.max_download_bytes:
                    raise self._too_big_to_extract(total, name, shown)
                if HAS_DATA_FILTER:
                    tar.extractall(sandbox, members=members, filter="data")
                else:  # pragma: no cover (Python < 3.11.4; link_problem is stricter there)
                    tar.extractall(sandbox, members=members)
        except FetchError:
            raise
        except tarfile.FilterError as exc:
            raise FetchError(f"refusing to extract {name} from {shown!r}: its member "
                             f"{exc.tarinfo.name!r} is unsafe ({exc})") from None
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise FetchError(f"could not extract {name} from {shown!r}: {_reason(exc, self.timeout)}") from None
        top = top_directory([m.name for m in members])
        return os.path.join(sandbox, top) if top else sandbox

    def _extract_zip(self, archive: str, name: str, shown: str, sandbox: str) -> str:
        """zipfile neither makes symlinks nor keeps modes, and checks nothing about paths, so the
        loop is ours: every member is checked first, then written without following links."""
        root = os.path.realpath(sandbox)

        def refuse(member: str, problem: str) -> FetchError:
            return FetchError(f"refusing to extract {name} from {shown!r}: its member {member!r} {problem}")

        try:
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                links: dict[str, str] = {}
                total = 0
                for info in infos:
                    target = None
                    if stat.S_ISLNK(_zip_mode(info)):
                        if info.file_size > 4096:
                            raise refuse(info.filename, "is a symlink with an overlong target")
                        target = links[info.filename] = zf.read(info).decode("utf-8", "surrogateescape")
                    problem = zip_member_problem(info, target)
                    if problem is not None:
                        raise refuse(info.filename, problem)
                    total += info.file_size
                if total > self.max_download_bytes:
                    raise self._too_big_to_extract(total, name, shown)
                for info in infos:
                    dest = os.path.join(root, info.filename)
                    # Real-path check at write time: an earlier symlink member may lead elsewhere.
                    parent = os.path.realpath(os.path.dirname(dest.rstrip("/")))
                    if not inside(parent, root):
                        raise refuse(info.filename, "would be written through a link outside the sandbox")
                    mode = _zip_mode(info)
                    if info.is_dir():
                        if not inside(os.path.realpath(dest), root):
                            raise refuse(info.filename, "would be written through a link outside the sandbox")
                        os.makedirs(dest, exist_ok=True)
                        continue
                    os.makedirs(parent, exist_ok=True)
                    if os.path.lexists(dest) and not os.path.isdir(dest) or os.path.islink(dest):
                        os.unlink(dest)  # replace, never write through an existing link
                    if info.filename in links:
                        target = links[info.filename]
                        if not inside(os.path.realpath(os.path.join(parent, target)), root):
                            raise refuse(info.filename, f"links to {target!r}, outside the sandbox")
                        os.symlink(target, dest)
                        continue
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                        while chunk := src.read(CHUNK):
                            out.write(chunk)
                    os.chmod(dest, 0o755 if mode & 0o100 else 0o644)
        except FetchError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error, lzma.LZMAError,
                NotImplementedError) as exc:
            raise FetchError(f"could not extract {name} from {shown!r}: {_reason(exc, self.timeout)}") from None
        top = top_directory([i.filename for i in infos])
        return os.path.join(sandbox, top) if top else sandbox

    # -- cache --

    def _through_cache(self, value: str, shown: str, scheme: str, sandbox: str) -> tuple[str, int, bool]:
        """(temporary file in the sandbox, size, from_cache). Fetches of one URI are serialized by
        a per-key lock, so a second concurrent fetch waits for the first and then hits."""
        self._prepare_cache()
        key = cache_key(value)
        entry = os.path.join(self.cache_dir, key)
        with _flock(os.path.join(self.cache_dir, "locks", key)):
            hit = self._copy_from_cache(entry, sandbox)
            if hit is not None:
                return hit[0], hit[1], True
            tmp, size = self._retrieve(value, shown, scheme, sandbox)
            self._store(key, tmp, size, shown)
            return tmp, size, False

    def _prepare_cache(self) -> None:
        with self._cache_ready_lock:  # before any thread of ours writes a temporary file there
            if self._cache_ready:
                return
            os.makedirs(os.path.join(self.cache_dir, "locks"), exist_ok=True)
            # Leftovers of an agent that died mid-copy (one agent owns its cache directory).
            for name in os.listdir(self.cache_dir):
                if name.startswith(TEMP_PREFIX):
                    _unlink(os.path.join(self.cache_dir, name))
            self._cache_ready = True

    def _copy_from_cache(self, entry: str, sandbox: str) -> tuple[str, int] | None:
        try:
            src = open(entry, "rb")  # noqa: SIM115 (an open file survives a concurrent eviction)
        except FileNotFoundError:
            return None
        with src:
            now = time.time_ns()
            os.utime(entry, ns=(now, now))  # last use, for LRU
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=sandbox)
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                return tmp, os.fstat(src.fileno()).st_size
            except BaseException:
                _unlink(tmp)
                raise

    def _store(self, key: str, tmp: str, size: int, shown: str) -> None:
        """Copies a fresh download into the cache (atomic rename), evicting LRU entries. A cache
        that cannot store is a missed optimization, never a failed fetch."""
        if size > self.cache_limit_bytes:
            log.info("event=fetch_not_cached uri=%s bytes=%d reason=larger_than_cache_limit limit=%d",
                     shown, size, self.cache_limit_bytes)
            return
        cache_tmp = None
        try:
            fd, cache_tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=self.cache_dir)
            with os.fdopen(fd, "wb") as out, open(tmp, "rb") as src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
            with _flock(os.path.join(self.cache_dir, "locks", "evict")):
                plan = plan_eviction([e for e in self._entries() if e.key != key], size, self.cache_limit_bytes)
                for victim in plan or []:
                    _unlink(os.path.join(self.cache_dir, victim))
                    log.info("event=fetch_cache_evicted key=%s", victim)
                entry = os.path.join(self.cache_dir, key)
                os.replace(cache_tmp, entry)
                cache_tmp = None
                now = time.time_ns()
                os.utime(entry, ns=(now, now))
        except OSError as exc:
            log.warning("event=fetch_cache_store_failed uri=%s error=%r", shown, _reason(exc, self.timeout))
        finally:
            if cache_tmp is not None:
                _unlink(cache_tmp)

    def _entries(self) -> list[CacheEntry]:
        entries = []
        for name in os.listdir(self.cache_dir):
            if len(name) != _KEY_LENGTH or not all(c in "0123456789abcdef" for c in name):
                continue
            try:
                st = os.stat(os.path.join(self.cache_dir, name))
            except FileNotFoundError:
                continue
            entries.append(CacheEntry(name, st.st_size, st.st_mtime_ns))
        return entries

    def cache_entries(self) -> list[CacheEntry]:
        """What the cache holds now (for operators and tests)."""
        self._prepare_cache()
        return self._entries()


# --- small I/O helpers ------------------------------------------------------------------------


def _request(value: str) -> urllib.request.Request:
    """An HTTP request; credentials in the URL become Basic auth that is not sent on redirects."""
    parts = urllib.parse.urlsplit(value)
    auth = None
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        auth = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        value = urllib.parse.urlunsplit(parts._replace(netloc=host))
    request = urllib.request.Request(value, headers={"User-Agent": "tepui-fetcher"})
    if auth is not None:
        request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    return request


@contextmanager
def _flock(path: str) -> Iterator[None]:
    """An exclusive lock between threads and processes (flock locks belong to the open file)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
