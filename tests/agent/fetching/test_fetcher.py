"""The agent's fetcher: URIs into the sandbox, safe extraction, size bounds, the LRU cache.

Fast tests use ``file://`` and pure helpers; tests with a local HTTP server are marked slow.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tepui.agent.fetching.fetcher import (
    CacheEntry,
    Fetcher,
    FetchError,
    FetchResult,
    archive_kind,
    cache_key,
    link_problem,
    member_problem,
    output_name,
    plan_eviction,
    redact,
    top_directory,
    uri_scheme,
)
from tepui.agent.fetching.fetch_rules import TEMP_PREFIX
from tepui.sdk.protocol.values import CommandURI

PROBE = os.path.join(os.path.dirname(__file__), "fetcher_probe.py")
MiB = 1024 * 1024


# --- archive builders -------------------------------------------------------------------------


def make_tar(path: Path, members: list[tuple[str, Any]], mode: str = "w:gz") -> Path:
    """members: (name, bytes) for files, (name, None) for dirs, (name, ("sym"|"hard", target)),
    (name, ("chr",)) for a device."""
    with tarfile.open(path, mode) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.mtime = int(time.time())
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, tuple):
                kind = content[0]
                info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE}[kind]
                info.linkname = content[1] if len(content) > 1 else ""
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755 if name.endswith(".sh") else 0o644
                tar.addfile(info, io.BytesIO(content))
    return path


def make_zip(path: Path, members: list[tuple[str, Any]]) -> Path:
    """members: (name, bytes) files (``.sh`` executable), (name/, None) dirs, (name, ("sym", t)),
    (name, ("fifo", "")) for a FIFO."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            if content is None:
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
                zf.writestr(info, b"")
            elif isinstance(content, tuple):
                kind = stat.S_IFLNK if content[0] == "sym" else stat.S_IFIFO
                info.external_attr = (kind | 0o777) << 16
                zf.writestr(info, content[1])
            else:
                info.external_attr = (stat.S_IFREG | (0o755 if name.endswith(".sh") else 0o644)) << 16
                zf.writestr(info, content)
    return path


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def fetcher(tmp_path: Path) -> Fetcher:
    return Fetcher(None, str(tmp_path / "cache"), timeout=5.0, allowed_dirs=[str(tmp_path)])


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    return tmp_path / "box" / "sandbox"


# --- pure helpers -----------------------------------------------------------------------------


def test_schemes_are_http_https_file_or_an_absolute_path() -> None:
    assert uri_scheme("http://h/a") == "http"
    assert uri_scheme("HTTPS://h/a") == "https"
    assert uri_scheme("file:///a/b") == "file"
    assert uri_scheme("/opt/app.tgz") == "file"
    with pytest.raises(FetchError, match=r"scheme 'ftp' is not supported"):
        uri_scheme("ftp://h/a")
    with pytest.raises(FetchError, match=r"neither an absolute path"):
        uri_scheme("relative/app.tgz")


def test_output_name_is_output_file_or_the_basename_without_query() -> None:
    assert output_name(CommandURI(value="http://h/d/app.tar.gz?sig=abc#frag")) == "app.tar.gz"
    assert output_name(CommandURI(value="http://h/d/my%20app.zip")) == "my app.zip"
    assert output_name(CommandURI(value="/opt/run.sh")) == "run.sh"
    assert output_name(CommandURI(value="http://h/x", output_file="y.bin")) == "y.bin"
    with pytest.raises(FetchError, match=r"set output_file"):
        output_name(CommandURI(value="http://h/dir/"))
    with pytest.raises(FetchError, match=r"set output_file"):
        output_name(CommandURI(value="http://h"))
    assert output_name(CommandURI(value="http://h/x", output_file="map/3/count.txt")) == "map/3/count.txt"
    for bad in ("../x", "..", "", "a/../b", "/abs/x", "a//b", "a/", "./a", f"a/{TEMP_PREFIX}x"):
        with pytest.raises(FetchError, match=r"output_file .* must be a plain file name"):
            output_name(CommandURI(value="http://h/x", output_file=bad))
    with pytest.raises(FetchError, match=r"output_file 'a/\.\./b' must be a plain file name or a relative path of "
                                         r"them inside the sandbox, but its part '\.\.': '\.\.' is not a file name"):
        output_name(CommandURI(value="http://h/x", output_file="a/../b"))


def test_archive_kinds() -> None:
    for name in ("a.tar", "a.tar.gz", "a.TGZ", "a.tar.bz2", "a.tar.xz"):
        assert archive_kind(name) == "tar"
    assert archive_kind("a.zip") == "zip"
    for name in ("a.gz", "a.txt", "a.tar.zst", "tar"):
        assert archive_kind(name) is None


def test_member_and_link_safety_rules() -> None:
    assert member_problem("a/b.txt") is None
    assert member_problem("./a/b.txt") is None
    assert member_problem("/etc/passwd") == "is an absolute path"
    assert member_problem("a/../../x") == "has a '..' component"
    assert member_problem("..") == "has a '..' component"
    assert link_problem("a/l", "b/c", hard=False) is None
    assert link_problem("a/l", "../b", hard=False) is None  # a/../b stays inside
    assert "outside the sandbox" in (link_problem("a/l", "../../b", hard=False) or "")
    assert "absolute path" in (link_problem("l", "/etc", hard=False) or "")
    assert "outside the sandbox" in (link_problem("a/h", "../x", hard=True) or "")  # hard: from the root
    assert top_directory(["app/", "app/bin/x", "./app/y"]) == "app"
    assert top_directory(["a.txt", "b.txt"]) is None
    assert top_directory(["only.txt"]) is None


def test_lru_plan_evicts_least_recently_used_until_the_item_fits() -> None:
    entries = [CacheEntry("a", 40, 3), CacheEntry("b", 40, 1), CacheEntry("c", 40, 2)]
    assert plan_eviction(entries, 10, 200) == []
    assert plan_eviction(entries, 30, 150) == []  # exactly full is fine
    assert plan_eviction(entries, 31, 150) == ["b"]
    assert plan_eviction(entries, 80, 150) == ["b", "c"]
    assert plan_eviction(entries, 150, 150) == ["b", "c", "a"]
    assert plan_eviction(entries, 151, 150) is None  # larger than the cache: fetch, don't cache
    assert cache_key("http://h/a") != cache_key("http://h/b") and len(cache_key("x")) == 64


def test_passwords_never_appear_in_messages() -> None:
    assert redact("https://bob:s3cret@h/a.tgz") == "https://bob:***@h/a.tgz"
    assert redact("https://h/a.tgz") == "https://h/a.tgz"
    with pytest.raises(FetchError) as err:
        uri_scheme("ftp://bob:s3cret@h/a")
    assert "s3cret" not in str(err.value)


# --- local files ------------------------------------------------------------------------------


def test_file_uri_and_absolute_path_are_copied(fetcher: Fetcher, sandbox: Path, tmp_path: Path) -> None:
    src = tmp_path / "src" / "notes.txt"
    src.parent.mkdir()
    src.write_bytes(b"notes\n")
    results = fetcher.fetch_blocking(
        [CommandURI(value=f"file://{src}"), CommandURI(value=str(src), output_file="copy.txt")], str(sandbox))
    assert results == [
        FetchResult(f"file://{src}", str(sandbox / "notes.txt"), 6, False),
        FetchResult(str(src), str(sandbox / "copy.txt"), 6, False),
    ]
    assert (sandbox / "notes.txt").read_bytes() == b"notes\n"
    assert stat.S_IMODE((sandbox / "notes.txt").stat().st_mode) == 0o644
    assert tree(sandbox) == {"notes.txt", "copy.txt"}  # no temporary file left behind


def test_executable_sets_mode_0755_and_is_never_extracted(fetcher: Fetcher, sandbox: Path, tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "tool.tar.gz", [("inner.txt", b"x")])
    script = tmp_path / "run"
    script.write_bytes(b"#!/bin/sh\necho hi\n")
    fetcher.fetch_blocking([CommandURI(value=str(script), executable=True),
                            CommandURI(value=str(archive), executable=True)], str(sandbox))
    assert stat.S_IMODE((sandbox / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((sandbox / "tool.tar.gz").stat().st_mode) == 0o755
    assert not (sandbox / "inner.txt").exists()


def test_missing_file_directory_and_special_files_fail_clearly(fetcher: Fetcher, sandbox: Path, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=rf"'file://{tmp_path}/nope/x\.txt': no such file"):
        fetcher.fetch_blocking([CommandURI(value=f"file://{tmp_path}/nope/x.txt")], str(sandbox))
    with pytest.raises(FetchError, match=r"is a directory"):
        fetcher.fetch_blocking([CommandURI(value=str(tmp_path), output_file="d")], str(sandbox))
    os.mkfifo(tmp_path / "fifo")  # nobody writes to it: opening it must not block
    with pytest.raises(FetchError, match=r"not a regular file"):
        fetcher.fetch_blocking([CommandURI(value=str(tmp_path / "fifo"))], str(sandbox))
    with pytest.raises(FetchError, match=r"local file .* not one on host 'elsewhere'"):
        fetcher.fetch_blocking([CommandURI(value="file://elsewhere/x.txt")], str(sandbox))
    assert tree(sandbox) == set()


def test_unsupported_scheme_and_unsafe_output_file_are_refused(fetcher: Fetcher, sandbox: Path) -> None:
    with pytest.raises(FetchError, match=r"'ftp://h/a\.tgz': the URI scheme 'ftp' is not supported"):
        fetcher.fetch_blocking([CommandURI(value="ftp://h/a.tgz")], str(sandbox))
    with pytest.raises(FetchError, match=r"s3://b/k.*scheme 's3'"):
        fetcher.fetch_blocking([CommandURI(value="s3://b/k")], str(sandbox))
    with pytest.raises(FetchError, match=r"output_file '\.\./x' must be a plain file name"):
        fetcher.fetch_blocking([CommandURI(value="/etc/hostname", output_file="../x")], str(sandbox))
    assert not (sandbox.parent / "x").exists()


def test_a_nested_output_file_creates_its_directories(fetcher: Fetcher, sandbox: Path, tmp_path: Path) -> None:
    (tmp_path / "count.txt").write_text("42\n")
    uris = [CommandURI(value=str(tmp_path / "count.txt"), output_file=f"map/{i}/count.txt", extract=False)
            for i in (0, 1)]
    results = fetcher.fetch_blocking(uris, str(sandbox))
    assert [r.path for r in results] == [str(sandbox / "map/0/count.txt"), str(sandbox / "map/1/count.txt")]
    assert (sandbox / "map/1/count.txt").read_text() == "42\n"
    assert tree(sandbox) >= {"map", "map/0", "map/0/count.txt", "map/1/count.txt"}


def test_a_nested_output_file_never_leaves_the_sandbox_through_a_link(fetcher: Fetcher, sandbox: Path,
                                                                      tmp_path: Path) -> None:
    (tmp_path / "count.txt").write_text("42\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    sandbox.mkdir(parents=True)
    (sandbox / "map").symlink_to(outside)  # as if something had left it there
    with pytest.raises(FetchError, match=r"output_file 'map/0/count.txt' leads outside the sandbox through a link"):
        fetcher.fetch_blocking([CommandURI(value=str(tmp_path / "count.txt"), output_file="map/0/count.txt")],
                               str(sandbox))
    assert list(outside.iterdir()) == []


def test_tar_and_zip_are_extracted_into_the_sandbox_and_kept(fetcher: Fetcher, sandbox: Path, tmp_path: Path) -> None:
    tgz = make_tar(tmp_path / "bundle.tgz", [("bundle/", None), ("bundle/hello.txt", b"hi\n"),
                                              ("bundle/bin/run.sh", b"#!/bin/sh\n"), ("bundle/link", ("sym", "hello.txt"))])
    tbz = make_tar(tmp_path / "flat.tar.bz2", [("a.txt", b"a"), ("b.txt", b"b")], mode="w:bz2")
    zp = make_zip(tmp_path / "app.zip", [("app/", None), ("app/run.sh", b"#!/bin/sh\n"), ("app/data.txt", b"d"),
                                         ("app/current", ("sym", "data.txt"))])
    results = fetcher.fetch_blocking([CommandURI(value=str(p)) for p in (tgz, tbz, zp)], str(sandbox))
    assert [r.path for r in results] == [str(sandbox / "bundle"), str(sandbox), str(sandbox / "app")]
    assert (sandbox / "bundle" / "hello.txt").read_bytes() == b"hi\n"
    assert os.readlink(sandbox / "bundle" / "link") == "hello.txt"
    assert stat.S_IMODE((sandbox / "bundle/bin/run.sh").stat().st_mode) & 0o111
    assert (sandbox / "a.txt").read_bytes() == b"a"
    assert (sandbox / "app" / "data.txt").read_bytes() == b"d"
    assert stat.S_IMODE((sandbox / "app" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((sandbox / "app" / "data.txt").stat().st_mode) == 0o644
    assert os.readlink(sandbox / "app" / "current") == "data.txt"
    assert {"bundle.tgz", "flat.tar.bz2", "app.zip"} <= tree(sandbox)  # archives kept


def test_extract_false_and_other_names_are_not_extracted(fetcher: Fetcher, sandbox: Path, tmp_path: Path) -> None:
    tgz = make_tar(tmp_path / "b.tgz", [("inner.txt", b"x")])
    plain_gz = tmp_path / "data.gz"
    plain_gz.write_bytes(tgz.read_bytes())
    fetcher.fetch_blocking([CommandURI(value=str(tgz), extract=False), CommandURI(value=str(plain_gz))], str(sandbox))
    assert tree(sandbox) == {"b.tgz", "data.gz"}


@pytest.mark.parametrize("members, member, why", [
    ([("ok.txt", b"ok"), ("../evil", b"evil")], "../evil", "has a '..' component"),
    ([("ok.txt", b"ok"), ("ABS", b"evil")], "ABS", "is an absolute path"),
    ([("up", ("sym", "../outside"))], "up", "outside the sandbox"),
    ([("etc", ("sym", "/etc"))], "etc", "links to the absolute path '/etc'"),
    ([("ok.txt", b"ok"), ("h", ("hard", "../../etc/passwd"))], "h", "outside the sandbox"),
    ([("null", ("chr",))], "null", "is a device file"),
])
def test_unsafe_tar_members_are_refused_before_anything_is_written(
        fetcher: Fetcher, sandbox: Path, tmp_path: Path, members: list, member: str, why: str) -> None:
    absolute = str(tmp_path / "box" / "abs-evil")
    members = [(absolute if name == "ABS" else name, content) for name, content in members]
    member = absolute if member == "ABS" else member
    archive = make_tar(tmp_path / "evil.tar.gz", members)
    with pytest.raises(FetchError) as err:
        fetcher.fetch_blocking([CommandURI(value=str(archive))], str(sandbox))
    message = str(err.value)
    assert f"member {member!r} " in message and why in message and str(archive) in message
    assert tree(sandbox.parent) == {"sandbox", "sandbox/evil.tar.gz"}  # nothing extracted, nothing outside


def test_a_link_that_escapes_only_through_another_link_is_caught_by_real_path_checks(
        fetcher: Fetcher, sandbox: Path, tmp_path: Path) -> None:
    # Lexically "esc -> sub/up/.." is "sub", inside; really sub/up is the sandbox, so it is its parent.
    archive = make_tar(tmp_path / "chain.tar", [("sub/", None), ("sub/up", ("sym", "..")), ("esc", ("sym", "sub/up/.."))],
                       mode="w")
    with pytest.raises(FetchError, match=r"member 'esc' is unsafe"):
        fetcher.fetch_blocking([CommandURI(value=str(archive))], str(sandbox))
    assert not os.path.lexists(sandbox / "esc")


@pytest.mark.parametrize("members, member, why", [
    ([("ok.txt", b"ok"), ("../evil", b"evil")], "../evil", "has a '..' component"),
    ([("/tmp/abs-evil-zip", b"evil")], "/tmp/abs-evil-zip", "is an absolute path"),
    ([("up", ("sym", "../../outside"))], "up", "outside the sandbox"),
    ([("pipe", ("fifo", ""))], "pipe", "is a FIFO or socket"),
])
def test_unsafe_zip_members_are_refused(fetcher: Fetcher, sandbox: Path, tmp_path: Path,
                                        members: list, member: str, why: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", members)
    with pytest.raises(FetchError) as err:
        fetcher.fetch_blocking([CommandURI(value=str(archive))], str(sandbox))
    assert f"member {member!r} " in str(err.value) and why in str(err.value)
    assert tree(sandbox.parent) == {"sandbox", "sandbox/evil.zip"}
    assert not os.path.exists("/tmp/abs-evil-zip")


def test_zip_member_written_through_a_link_leading_out_is_refused(fetcher: Fetcher, sandbox: Path,
                                                                  tmp_path: Path) -> None:
    # "sub/up -> .." is the sandbox itself (allowed); "out -> sub/up/.." lexically is "sub", really
    # the sandbox's parent: refused at write time by the real-path check.
    archive = make_zip(tmp_path / "chain.zip", [("sub/", None), ("sub/up", ("sym", "..")), ("out", ("sym", "sub/up/.."))])
    with pytest.raises(FetchError, match=r"member 'out' links to 'sub/up/\.\.', outside the sandbox"):
        fetcher.fetch_blocking([CommandURI(value=str(archive))], str(sandbox))
    assert not os.path.lexists(sandbox / "out")


def test_a_corrupt_archive_is_a_clear_error(fetcher: Fetcher, sandbox: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(FetchError, match=r"could not extract broken\.tar\.gz from '.*broken\.tar\.gz'"):
        fetcher.fetch_blocking([CommandURI(value=str(bad))], str(sandbox))
    (tmp_path / "broken.zip").write_bytes(b"PK nope")
    with pytest.raises(FetchError, match=r"could not extract broken\.zip"):
        fetcher.fetch_blocking([CommandURI(value=str(tmp_path / "broken.zip"))], str(sandbox))


def test_oversized_copy_and_oversized_extraction_fail(tmp_path: Path, sandbox: Path) -> None:
    small = Fetcher(None, str(tmp_path / "cache"), max_download_bytes=1000, allowed_dirs=[str(tmp_path)])
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(FetchError, match=r"big\.bin'.*more than the limit of 1000 bytes"):
        small.fetch_blocking([CommandURI(value=str(big))], str(sandbox))
    assert tree(sandbox) == set()
    bomb = make_tar(tmp_path / "bomb.tgz", [("zeros", b"\0" * 5000)])  # compresses far below 1000 bytes
    assert bomb.stat().st_size < 1000
    with pytest.raises(FetchError, match=r"refusing to extract bomb\.tgz .* unpacks to 4\.9 KiB"):
        small.fetch_blocking([CommandURI(value=str(bomb))], str(sandbox))
    assert not (sandbox / "zeros").exists()


def test_connection_refused_is_a_fetch_error(fetcher: Fetcher, sandbox: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/app.tgz"
    with pytest.raises(FetchError, match=rf"could not fetch '{url}': connection refused"):
        fetcher.fetch_blocking([CommandURI(value=url)], str(sandbox))
    assert tree(sandbox) == set()


# --- local files: only from allowed directories, only what the task's user may read -------------


@pytest.fixture
def areas(tmp_path: Path) -> tuple[Path, Path]:
    """(allowed, outside): a directory the fetcher may read from, and a file's worth beside it."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "ok.txt").write_bytes(b"ok\n")
    (outside / "secret.txt").write_bytes(b"secret\n")
    return allowed, outside


def only_from(tmp_path: Path, *dirs: Path) -> Fetcher:
    return Fetcher(None, str(tmp_path / "cache"), timeout=5.0, allowed_dirs=[str(d) for d in dirs])


def test_without_allowed_directories_no_local_file_is_fetched(tmp_path: Path, sandbox: Path,
                                                              areas: tuple[Path, Path]) -> None:
    allowed, _ = areas
    for value in (f"file://{allowed}/ok.txt", f"{allowed}/ok.txt"):
        with pytest.raises(FetchError) as refused:
            only_from(tmp_path).fetch_blocking([CommandURI(value=value)], str(sandbox))
        assert str(refused.value) == (
            f"cannot fetch {value!r}: this agent fetches no local files (file:// URIs and absolute paths are refused "
            "unless the operator allows a directory: `tepui agent --fetcher-allowed-dir DIR`, or "
            "`tepui up --fetcher-allowed-dir DIR`)")
    assert tree(sandbox) == set()


def test_a_file_outside_the_allowed_directories_is_refused_naming_the_rule(
        tmp_path: Path, sandbox: Path, areas: tuple[Path, Path]) -> None:
    allowed, outside = areas
    fetcher = only_from(tmp_path, allowed)
    for value in (f"file://{outside}/secret.txt", "/etc/hostname"):
        with pytest.raises(FetchError) as refused:
            fetcher.fetch_blocking([CommandURI(value=value)], str(sandbox))
        assert str(refused.value) == (
            f"cannot fetch {value!r}: it is outside the directories this agent fetches local files from "
            f"({allowed}); use a file there, or an operator can allow another directory with "
            "`tepui agent --fetcher-allowed-dir DIR`")
    # '..' is resolved before the check, as are links.
    dotdot = f"{allowed}/../outside/secret.txt"
    with pytest.raises(FetchError, match=rf"resolves to '{outside}/secret.txt', which is outside"):
        fetcher.fetch_blocking([CommandURI(value=dotdot)], str(sandbox))
    assert fetcher.fetch_blocking([CommandURI(value=f"file://{allowed}/ok.txt")], str(sandbox))[0].bytes == 3
    assert tree(sandbox) == {"ok.txt"}


def test_a_link_inside_an_allowed_directory_that_leads_outside_is_refused(
        tmp_path: Path, sandbox: Path, areas: tuple[Path, Path]) -> None:
    allowed, outside = areas
    (allowed / "escape.txt").symlink_to(outside / "secret.txt")
    (allowed / "escape-dir").symlink_to(outside)
    (allowed / "fine.txt").symlink_to("ok.txt")  # a link that stays inside is fine
    fetcher = only_from(tmp_path, allowed)
    for value in (f"file://{allowed}/escape.txt", f"{allowed}/escape-dir/secret.txt"):
        with pytest.raises(FetchError, match=rf"resolves to '{outside}/secret.txt', which is outside the "
                                             rf"directories this agent fetches local files from \({allowed}\)"):
            fetcher.fetch_blocking([CommandURI(value=value)], str(sandbox))
    fetcher.fetch_blocking([CommandURI(value=f"{allowed}/fine.txt")], str(sandbox))
    assert (sandbox / "fine.txt").read_bytes() == b"ok\n" and tree(sandbox) == {"fine.txt"}


def test_the_file_really_opened_is_checked_again(tmp_path: Path, sandbox: Path, areas: tuple[Path, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A link swapped in between the check and the open: played by a realpath that misses links."""
    allowed, outside = areas
    (allowed / "sub").symlink_to(outside)
    (allowed / "last").symlink_to(outside / "secret.txt")
    fetcher = only_from(tmp_path, allowed)
    monkeypatch.setattr(os.path, "realpath", lambda path, **_: os.path.normpath(path))
    with pytest.raises(FetchError, match=rf"'{outside}/secret.txt', which is outside"):  # found through /proc/self/fd
        fetcher.fetch_blocking([CommandURI(value=f"{allowed}/sub/secret.txt")], str(sandbox))
    with pytest.raises(FetchError, match=r"it changed into a link while it was being opened"):  # O_NOFOLLOW
        fetcher.fetch_blocking([CommandURI(value=f"{allowed}/last")], str(sandbox))
    assert tree(sandbox) == set()


# --- fetching as the task's user (an agent running as root) ---------------------------------------

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to the task's user needs an agent running as root")


@pytest.fixture
def public_area() -> Iterator[Path]:
    """A directory the task user (nobody) can reach: pytest's tmp dirs are 0700."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="tepui-fetch-"))
    os.chmod(root, 0o711)
    (root / "allowed").mkdir(mode=0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def nobody() -> Any:
    from tepui.agent.containerizers.processes import resolve_user

    return resolve_user("nobody")


@as_root
def test_as_root_a_file_the_task_user_cannot_read_is_refused_even_in_an_allowed_directory(public_area: Path) -> None:
    from tepui.agent.fetching.fetch_as_user import fetch_as

    allowed = public_area / "allowed"
    private = allowed / "root-only.txt"
    private.write_bytes(b"root's\n")
    os.chmod(private, 0o600)
    fetcher = Fetcher(None, str(public_area / "cache"), timeout=5.0, allowed_dirs=[str(allowed)])
    sandbox = public_area / "sandboxes" / "F1" / "t1"
    with pytest.raises(FetchError) as refused:
        fetch_as(fetcher, [CommandURI(value=f"file://{private}")], str(sandbox), nobody())
    assert str(refused.value) == (f"cannot fetch 'file://{private}': permission denied "
                                  "(the fetcher runs as the task's user 'nobody')")
    assert tree(sandbox) == set()
    # The agent itself (root) could have read it: the refusal is the user's, not the rule's.
    assert fetcher.fetch_blocking([CommandURI(value=str(private))], str(public_area / "root-box"))[0].bytes == 7


@as_root
def test_as_root_an_allowed_file_is_fetched_by_and_for_the_task_user(public_area: Path) -> None:
    from tepui.agent.fetching.fetch_as_user import fetch_as

    allowed = public_area / "allowed"
    make_tar(allowed / "app.tgz", [("app/run.sh", b"#!/bin/sh\n"), ("app/data", None)])
    (allowed / "notes.txt").write_bytes(b"notes\n")
    fetcher = Fetcher(None, str(public_area / "cache"), timeout=5.0, allowed_dirs=[str(allowed)])
    sandbox = public_area / "sandboxes" / "F1" / "t1"
    user = nobody()
    results = fetch_as(fetcher, [CommandURI(value=f"file://{allowed}/notes.txt"),
                                 CommandURI(value=str(allowed / "app.tgz"), cache=True)], str(sandbox), user)
    assert [(r.path, r.bytes, r.from_cache) for r in results] == [
        (str(sandbox / "notes.txt"), 6, False), (str(sandbox / "app"), (allowed / "app.tgz").stat().st_size, False)]
    owners = {str(p.relative_to(sandbox)): (p.lstat().st_uid, p.lstat().st_gid) for p in [sandbox, *sandbox.rglob("*")]}
    assert set(owners.values()) == {(user.uid, user.gid)}, owners
    assert (sandbox / "notes.txt").read_bytes() == b"notes\n" and (sandbox / "app" / "run.sh").exists()
    # Its cache entry is its own: in users/<uid>, 0700, owned by the user; not the agent's, not another user's.
    mine = public_area / "cache" / "users" / str(user.uid)
    assert (mine.stat().st_uid, stat.S_IMODE(mine.stat().st_mode)) == (user.uid, 0o700)
    assert stat.S_IMODE(mine.parent.stat().st_mode) == 0o711
    assert [p.name for p in mine.iterdir() if p.name != "locks"] == [cache_key(str(allowed / "app.tgz"))]
    assert fetcher.cache_entries() == []
    again = fetch_as(fetcher, [CommandURI(value=str(allowed / "app.tgz"), cache=True)],
                     str(public_area / "sandboxes" / "F1" / "t2"), user)
    assert again[0].from_cache
    assert not fetcher.fetch_blocking([CommandURI(value=str(allowed / "app.tgz"), cache=True)],
                                      str(public_area / "root-box"))[0].from_cache


@as_root
def test_as_root_the_allowed_directories_still_apply_to_the_task_user(public_area: Path) -> None:
    from tepui.agent.fetching.fetch_as_user import fetch_as

    fetcher = Fetcher(None, str(public_area / "cache"), timeout=5.0, allowed_dirs=[str(public_area / "allowed")])
    with pytest.raises(FetchError, match=r"cannot fetch '/etc/passwd': it is outside the directories"):
        fetch_as(fetcher, [CommandURI(value="/etc/passwd")], str(public_area / "sandboxes" / "F1" / "t1"), nobody())


# --- cache ------------------------------------------------------------------------------------


def test_cache_serves_a_second_fetch_without_the_origin(fetcher: Fetcher, tmp_path: Path) -> None:
    src = tmp_path / "app.tgz"
    make_tar(src, [("app/v1.txt", b"1")])
    uri = CommandURI(value=f"file://{src}", cache=True)
    first = fetcher.fetch_blocking([uri], str(tmp_path / "s1"))
    src.unlink()  # the origin is gone: only the cache can answer
    second = fetcher.fetch_blocking([uri], str(tmp_path / "s2"))
    assert [first[0].from_cache, second[0].from_cache] == [False, True]
    assert second[0].bytes == first[0].bytes
    assert (tmp_path / "s2" / "app" / "v1.txt").read_bytes() == b"1"  # extracted from the cached copy
    assert [e.key for e in fetcher.cache_entries()] == [cache_key(uri.value)]
    # Without cache=True the cache is not consulted.
    with pytest.raises(FetchError, match=r"no such file"):
        fetcher.fetch_blocking([CommandURI(value=uri.value)], str(tmp_path / "s3"))


def test_cache_evicts_least_recently_used_and_skips_items_larger_than_the_limit(tmp_path: Path) -> None:
    fetcher = Fetcher(None, str(tmp_path / "cache"), cache_limit_bytes=250, allowed_dirs=[str(tmp_path)])
    uris = {}
    for name, size in (("a", 100), ("b", 100), ("c", 100), ("huge", 300)):
        (tmp_path / name).write_bytes(name[0].encode() * size)
        uris[name] = CommandURI(value=str(tmp_path / name), cache=True)
    box = str(tmp_path / "box")
    fetcher.fetch_blocking([uris["a"], uris["b"]], box)
    assert fetcher.fetch_blocking([uris["a"]], box)[0].from_cache  # a is now more recently used than b
    fetcher.fetch_blocking([uris["c"]], box)  # 300 > 250: b, the least recently used, goes
    assert {e.key for e in fetcher.cache_entries()} == {cache_key(uris["a"].value), cache_key(uris["c"].value)}
    huge = fetcher.fetch_blocking([uris["huge"]], box)[0]
    assert huge.bytes == 300 and not huge.from_cache and (tmp_path / "box" / "huge").stat().st_size == 300
    assert {e.key for e in fetcher.cache_entries()} == {cache_key(uris["a"].value), cache_key(uris["c"].value)}
    assert sum(e.size for e in fetcher.cache_entries()) <= 250
    assert not fetcher.fetch_blocking([uris["b"]], box)[0].from_cache
    assert not [n for n in os.listdir(tmp_path / "cache") if n.startswith(".tepui-fetch-")]


# --- over HTTP --------------------------------------------------------------------------------


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving fixed routes; counts the requests per path."""

    def __init__(self, routes: dict[str, tuple[int, bytes, dict[str, str]]]) -> None:
        self.routes = routes
        self.hits: dict[str, int] = {}
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                outer.hits[path] = outer.hits.get(path, 0) + 1
                time.sleep(outer.delay)
                status, body, headers = outer.routes.get(path, (404, b"not found\n", {}))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "stream" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True  # no length: the body ends when the connection does
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.running = True

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    tgz = make_tar(tmp_path / "served.tgz", [("site/", None), ("site/index.html", b"<h1>hi</h1>\n")]).read_bytes()
    zp = make_zip(tmp_path / "served.zip", [("lib/", None), ("lib/x.py", b"print(1)\n")]).read_bytes()
    routes = {
        "/files/hello.txt": (200, b"hello world\n", {}),
        "/files/site.tar.gz": (200, tgz, {}),
        "/files/lib.zip": (200, zp, {}),
        "/files/run.sh": (200, b"#!/bin/sh\necho ran\n", {}),
        "/files/big.bin": (200, b"B" * (3 * MiB), {}),
        "/files/stream.bin": (200, b"S" * (3 * MiB), {"stream": "1"}),
        "/old/hello.txt": (302, b"", {"Location": "/files/hello.txt"}),
        "/forbidden.txt": (403, b"no\n", {}),
    }
    srv = Server(routes)
    yield srv
    srv.stop()


@pytest.mark.slow
def test_http_downloads_extracts_and_marks_executable(fetcher: Fetcher, sandbox: Path, server: Server) -> None:
    results = fetcher.fetch_blocking([
        CommandURI(value=server.url("/files/hello.txt?token=abc")),
        CommandURI(value=server.url("/files/site.tar.gz")),
        CommandURI(value=server.url("/files/lib.zip")),
        CommandURI(value=server.url("/files/run.sh"), executable=True),
        CommandURI(value=server.url("/old/hello.txt"), output_file="redirected.txt"),
    ], str(sandbox))
    assert (sandbox / "hello.txt").read_bytes() == b"hello world\n"
    assert results[0] == FetchResult(server.url("/files/hello.txt?token=abc"), str(sandbox / "hello.txt"), 12, False)
    assert (sandbox / "site" / "index.html").read_bytes() == b"<h1>hi</h1>\n" and results[1].path == str(sandbox / "site")
    assert (sandbox / "lib" / "x.py").read_bytes() == b"print(1)\n"
    assert stat.S_IMODE((sandbox / "run.sh").stat().st_mode) == 0o755
    assert subprocess.run([str(sandbox / "run.sh")], capture_output=True, check=False).stdout == b"ran\n"
    assert (sandbox / "redirected.txt").read_bytes() == b"hello world\n"
    assert {"site.tar.gz", "lib.zip"} <= tree(sandbox)


@pytest.mark.slow
@as_root
def test_as_root_http_downloads_and_every_archive_kind_work_as_the_task_user(
        server: Server, public_area: Path, tmp_path: Path) -> None:
    """The child is the task's user before it fetches: whatever it needs later (compressions, the
    IDNA codec, HTTP parsing) must already be loaded, as the interpreter may be out of reach."""
    from tepui.agent.fetching.fetch_as_user import fetch_as

    for name, mode in (("b.tar.bz2", "w:bz2"), ("x.tar.xz", "w:xz")):
        server.routes[f"/files/{name}"] = (200, make_tar(tmp_path / name, [(f"{name[0]}/f", b"1")], mode).read_bytes(), {})
    fetcher = Fetcher(None, str(public_area / "cache"), timeout=5.0)
    sandbox = public_area / "sandboxes" / "F1" / "t1"
    named = server.url("/files/hello.txt").replace("127.0.0.1", "localhost")  # a host name, through IDNA
    fetch_as(fetcher, [CommandURI(value=named), CommandURI(value=server.url("/files/site.tar.gz"), cache=True),
                       CommandURI(value=server.url("/files/lib.zip")), CommandURI(value=server.url("/files/b.tar.bz2")),
                       CommandURI(value=server.url("/files/x.tar.xz")),
                       CommandURI(value=server.url("/old/hello.txt"), output_file="redirected.txt")],
             str(sandbox), nobody())
    assert {"hello.txt", "site/index.html", "lib/x.py", "b/f", "x/f", "redirected.txt"} <= tree(sandbox)
    assert {p.lstat().st_uid for p in sandbox.rglob("*")} == {nobody().uid}
    with pytest.raises(FetchError, match=r"the server answered HTTP 404"):
        fetch_as(fetcher, [CommandURI(value=server.url("/files/missing.tgz"))], str(sandbox), nobody())


@pytest.mark.slow
def test_http_errors_name_the_status_and_the_uri(fetcher: Fetcher, sandbox: Path, server: Server) -> None:
    missing = server.url("/files/missing.tgz")
    with pytest.raises(FetchError, match=rf"could not fetch '{missing}': the server answered HTTP 404"):
        fetcher.fetch_blocking([CommandURI(value=missing)], str(sandbox))
    with pytest.raises(FetchError, match=r"HTTP 403"):
        fetcher.fetch_blocking([CommandURI(value=server.url("/forbidden.txt"))], str(sandbox))
    assert tree(sandbox) == set()


@pytest.mark.slow
def test_http_oversized_downloads_fail_and_leave_no_file(tmp_path: Path, sandbox: Path, server: Server) -> None:
    fetcher = Fetcher(None, str(tmp_path / "cache"), max_download_bytes=1 * MiB, timeout=5.0)
    with pytest.raises(FetchError, match=r"big\.bin'.*3\.0 MiB, more than the limit of 1\.0 MiB"):
        fetcher.fetch_blocking([CommandURI(value=server.url("/files/big.bin"))], str(sandbox))
    # Without a Content-Length the running count stops it.
    with pytest.raises(FetchError, match=r"stream\.bin'.*grew past the limit of 1\.0 MiB"):
        fetcher.fetch_blocking([CommandURI(value=server.url("/files/stream.bin"))], str(sandbox))
    assert tree(sandbox) == set()


@pytest.mark.slow
def test_http_cache_hit_with_the_server_stopped(fetcher: Fetcher, tmp_path: Path, server: Server) -> None:
    uri = CommandURI(value=server.url("/files/site.tar.gz"), cache=True)
    assert not fetcher.fetch_blocking([uri], str(tmp_path / "s1"))[0].from_cache
    server.stop()
    again = fetcher.fetch_blocking([uri], str(tmp_path / "s2"))[0]
    assert again.from_cache and again.path == str(tmp_path / "s2" / "site")
    assert (tmp_path / "s2" / "site" / "index.html").read_bytes() == b"<h1>hi</h1>\n"
    assert server.hits["/files/site.tar.gz"] == 1


@pytest.mark.slow
def test_concurrent_fetches_of_one_uri_download_once(fetcher: Fetcher, tmp_path: Path, server: Server) -> None:
    server.delay = 0.2
    uri = CommandURI(value=server.url("/files/big.bin"), cache=True)
    results: list[FetchResult] = []
    workers = [threading.Thread(target=lambda i=i: results.extend(fetcher.fetch_blocking([uri], str(tmp_path / f"s{i}"))))
               for i in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert len(results) == 6 and sorted(r.from_cache for r in results) == [False] + [True] * 5
    assert server.hits["/files/big.bin"] == 1
    assert all((tmp_path / f"s{i}" / "big.bin").read_bytes() == b"B" * (3 * MiB) for i in range(6))
    assert [e.size for e in fetcher.cache_entries()] == [3 * MiB]


@pytest.mark.slow
def test_fetch_runs_in_the_reactor_thread_pool_and_fires_on_the_reactor_thread(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, PROBE, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "problem" not in result, result
    assert result["worker_threads"] == [True, True]
    assert result["on_reactor_thread"] and result["error_on_reactor_thread"]
    assert result["content"] == "hello from the probe\n"
    [[uri, path, size, from_cache]] = result["results"]
    assert uri.endswith("/hello.txt") and path == str(tmp_path / "sandbox" / "hello.txt") and size == 21 and not from_cache
    assert result["is_fetch_error"] and "HTTP 404" in result["error"] and "/missing.txt" in result["error"]
