"""The fetcher's rules, pure: names, schemes, archive safety and cache eviction.

Everything here decides without touching the network or the disk, so it is unit-tested
directly; ``fetcher.py`` does the I/O and applies these rules.
"""

from __future__ import annotations

import hashlib
import posixpath
import stat
import tarfile
import urllib.parse
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from tepui.sdk.protocol.values import CommandURI

CHUNK = 1 << 20
TEMP_PREFIX = ".tepui-fetch-"
PROGRESS_EVERY = 10.0  # seconds between progress lines of one long download
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")  # Python 3.11.4+
_KEY_LENGTH = 64  # sha256 hex


class FetchError(Exception):
    """A URI could not be fetched; ``str(e)`` is one sentence naming the URI and the cause."""


@dataclass(frozen=True)
class FetchResult:
    """One fetched URI. ``path`` is the file in the sandbox; for an extracted archive it is the
    archive's single top-level directory when it has one, else the sandbox itself (the archive
    file stays at ``<sandbox>/<name>``). ``bytes`` is the size of the downloaded file."""

    uri: str
    path: str
    bytes: int
    from_cache: bool


@dataclass(frozen=True)
class CacheEntry:
    key: str
    size: int
    last_used_ns: int


# --- pure helpers -----------------------------------------------------------------------------


def redact(uri: str) -> str:
    """The URI as shown in messages and logs: a password in it becomes ``***``."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri
    if "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    if ":" not in userinfo:
        return uri
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def uri_scheme(value: str) -> str:
    """``http``, ``https`` or ``file`` (a plain absolute path is a file); else FetchError."""
    if value.startswith("/"):
        return "file"
    scheme = urllib.parse.urlsplit(value).scheme.lower()
    if scheme in ("http", "https", "file"):
        return scheme
    if not scheme:
        raise FetchError(f"cannot fetch {redact(value)!r}: it is neither an absolute path nor a URI "
                         "with a supported scheme (http, https, file)")
    raise FetchError(f"cannot fetch {redact(value)!r}: the URI scheme {scheme!r} is not supported "
                     "(use http, https, file or an absolute path)")


def local_path(value: str) -> str:
    """The local path a ``file://`` URI or an absolute path names."""
    if value.startswith("/"):
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(f"cannot fetch {redact(value)!r}: a file URI must name a local file "
                         f"(file:///path), not one on host {parts.netloc!r}")
    path = urllib.parse.unquote(parts.path)
    if not path.startswith("/"):
        raise FetchError(f"cannot fetch {redact(value)!r}: a file URI needs an absolute path (file:///path)")
    return path


ALLOW_FLAG = "--fetcher-allowed-dir"


def inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both already real paths)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def local_file_problem(shown: str, path: str, real: str, allowed: Sequence[str]) -> str | None:
    """Why the local file ``path`` (``real`` once links and ``..`` are resolved) may not be
    fetched, as the task's failure message, or None. Local files come only from the directories
    the operator allows (``allowed``, real paths): without the rule a task could copy anything the
    fetcher can read, from the agent's keys to other tasks' sandboxes."""
    if not allowed:
        return (f"cannot fetch {shown!r}: this agent fetches no local files (file:// URIs and absolute paths are "
                f"refused unless the operator allows a directory: `tepui agent {ALLOW_FLAG} DIR`, or "
                f"`tepui up {ALLOW_FLAG} DIR`)")
    if any(inside(real, root) for root in allowed):
        return None
    where = "it is" if real == path else f"it resolves to {real!r}, which is"
    return (f"cannot fetch {shown!r}: {where} outside the directories this agent fetches local files from "
            f"({', '.join(allowed)}); use a file there, or an operator can allow another directory with "
            f"`tepui agent {ALLOW_FLAG} DIR`")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file name directly inside the sandbox, or None."""
    if not name:
        return "it is empty"
    if "/" in name:
        return "it contains '/'"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    if "\0" in name:
        return "it contains a NUL byte"
    if name.startswith(TEMP_PREFIX):
        return f"names starting with {TEMP_PREFIX!r} are the fetcher's own"
    return None


def output_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be an ``output_file``, or None. A relative path of file names
    (``map/3/count.txt``: the batch framework's upstream outputs land under ``STAGE/INDEX/``);
    no absolute path, no ``..`` and no empty or ``.`` component, so it names one place inside
    the sandbox and nothing else."""
    if path.startswith("/"):
        return "it is an absolute path"
    for part in path.split("/"):
        problem = name_problem(part)
        if problem is not None:
            return f"its part {part!r}: {problem}" if "/" in path else problem
    return None


def output_name(uri: CommandURI) -> str:
    """The file's path in the sandbox: ``output_file`` (directories in it are created), else the
    basename of the URI's path (the query string and fragment are not part of it)."""
    shown = redact(uri.value)
    if uri.output_file is not None:
        problem = output_file_problem(uri.output_file)
        if problem is not None:
            raise FetchError(f"cannot fetch {shown!r}: output_file {uri.output_file!r} must be a plain "
                             f"file name or a relative path of them inside the sandbox, but {problem}")
        return uri.output_file
    path = uri.value if uri.value.startswith("/") else urllib.parse.unquote(urllib.parse.urlsplit(uri.value).path)
    name = posixpath.basename(path)
    if name_problem(name) is not None:
        raise FetchError(f"cannot fetch {shown!r}: its path ends without a file name to save it under; "
                         "set output_file")
    return name


def archive_kind(name: str) -> str | None:
    """``"tar"`` or ``"zip"`` when a file of this name is extracted, else None."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    return None


def member_problem(name: str) -> str | None:
    """Why an archive member's path would leave the sandbox, or None (``./`` parts are fine)."""
    if "\0" in name:
        return "contains a NUL byte"
    if name.startswith("/"):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "has a '..' component"
    return None


def link_problem(member: str, target: str, *, hard: bool) -> str | None:
    """Why a link member leads outside the sandbox, or None. A symlink's target is relative to
    the member's directory; a hard link's (tar) is relative to the archive's root."""
    if not target:
        return "is a link with an empty target"
    if target.startswith("/"):
        return f"links to the absolute path {target!r}"
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        return f"links to {target!r}, outside the sandbox"
    if not HAS_DATA_FILTER and ".." in target.split("/"):
        # Without tarfile's real-path checks, a '..' behind another symlink could still escape.
        return f"links to {target!r}, and links with '..' are refused on this Python"
    return None


def tar_member_problem(member: tarfile.TarInfo) -> str | None:
    problem = member_problem(member.name)
    if problem is not None:
        return problem
    if member.issym():
        return link_problem(member.name, member.linkname, hard=False)
    if member.islnk():
        return link_problem(member.name, member.linkname, hard=True)
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    if not (member.isfile() or member.isdir()):
        return "has an unsupported member type"
    return None


def zip_member_problem(info: zipfile.ZipInfo, link_target: str | None) -> str | None:
    problem = member_problem(info.filename)
    if problem is not None:
        return problem
    mode = _zip_mode(info)
    if stat.S_ISLNK(mode):
        return link_problem(info.filename.rstrip("/"), link_target or "", hard=False)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device file"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "is a FIFO or socket"
    return None


def top_directory(names: Sequence[str]) -> str | None:
    """The single top-level directory all members share (``app-1.0`` in ``app-1.0/bin/x``)."""
    tops, nested = set(), False
    for name in names:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if parts:
            tops.add(parts[0])
            nested = nested or len(parts) > 1 or name.endswith("/")
    return tops.pop() if len(tops) == 1 and nested else None


def cache_key(uri: str) -> str:
    return hashlib.sha256(uri.encode("utf-8", "surrogateescape")).hexdigest()


def plan_eviction(entries: Sequence[CacheEntry], incoming: int, limit: int) -> list[str] | None:
    """Keys to evict, least recently used first, so that ``incoming`` bytes fit under ``limit``;
    None when the item is larger than the whole limit (fetch it, do not cache it)."""
    if incoming > limit:
        return None
    total = sum(e.size for e in entries)
    evict: list[str] = []
    for entry in sorted(entries, key=lambda e: (e.last_used_ns, e.key)):
        if total + incoming <= limit:
            break
        evict.append(entry.key)
        total -= entry.size
    return evict


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def _human(n: int) -> str:
    size: float = n  # still the int n while it counts bytes
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)  # pragma: no cover
