"""The agent's sandbox files API: path confinement, browse and read (pure functions), and the
HTTP skin's JSON answers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.web.test.requesthelper import DummyRequest

from tepui.agent.sandbox.files_http import MAX_READ, FilesError, browse, build_root, confine, read, sandbox_dir

FID, TID = "fw-1", "task-1"


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    sandbox = tmp_path / "sandboxes" / FID / TID
    (sandbox / "sub" / "deeper").mkdir(parents=True)
    (sandbox / "stdout").write_bytes(b"hello\nworld\n")
    (sandbox / "stderr").write_bytes(b"")
    (sandbox / "sub" / "note.txt").write_text("inside")
    (tmp_path / "secret").write_text("outside the sandbox")
    return tmp_path


def sandbox(work_dir: Path) -> str:
    return sandbox_dir(str(work_dir), FID, TID)


def code_of(call: Any) -> tuple[int, str]:
    with pytest.raises(FilesError) as info:
        call()
    return info.value.code, info.value.reason


# --- confinement ----------------------------------------------------------------------------------


def test_sandbox_dir_validates_ids_and_existence(work_dir: Path) -> None:
    assert sandbox(work_dir).endswith(f"sandboxes/{FID}/{TID}")
    assert code_of(lambda: sandbox_dir(str(work_dir), None, TID)) == (400, "BAD_REQUEST")
    assert code_of(lambda: sandbox_dir(str(work_dir), FID, "")) == (400, "BAD_REQUEST")
    for bad in ("..", ".", "a/b", "../fw-1"):
        assert code_of(lambda bad=bad: sandbox_dir(str(work_dir), bad, TID)) == (400, "BAD_REQUEST")
        assert code_of(lambda bad=bad: sandbox_dir(str(work_dir), FID, bad)) == (400, "BAD_REQUEST")
    assert code_of(lambda: sandbox_dir(str(work_dir), FID, "task-2")) == (404, "NO_SANDBOX")


@pytest.mark.parametrize("path", ["..", "../secret", "sub/../../secret", "sub/..", "./../x", "a/../../b"])
def test_dot_dot_is_refused(work_dir: Path, path: str) -> None:
    assert code_of(lambda: confine(sandbox(work_dir), path)) == (400, "BAD_PATH")


@pytest.mark.parametrize("path", ["/etc/passwd", "/", "//stdout"])
def test_absolute_paths_are_refused(work_dir: Path, path: str) -> None:
    assert code_of(lambda: confine(sandbox(work_dir), path)) == (400, "BAD_PATH")


def test_nul_byte_is_refused(work_dir: Path) -> None:
    assert code_of(lambda: confine(sandbox(work_dir), "std\0out")) == (400, "BAD_PATH")


def test_paths_inside_resolve(work_dir: Path) -> None:
    box = os.path.realpath(sandbox(work_dir))
    assert confine(box, "") == box
    assert confine(box, ".") == box
    assert confine(box, "stdout") == os.path.join(box, "stdout")
    assert confine(box, "./sub//note.txt") == os.path.join(box, "sub", "note.txt")
    assert confine(box, "missing") == os.path.join(box, "missing")  # existence is read()'s business


def test_symlinks_escaping_the_sandbox_are_refused(work_dir: Path) -> None:
    box = Path(sandbox(work_dir))
    (box / "leak").symlink_to(work_dir / "secret")
    (box / "up").symlink_to(work_dir)
    (box / "abs").symlink_to("/etc")
    for path in ("leak", "up", "up/secret", "abs", "abs/passwd"):
        assert code_of(lambda path=path: confine(str(box), path)) == (403, "PATH_ESCAPES")
        assert code_of(lambda path=path: read(str(box), path)) == (403, "PATH_ESCAPES")
    assert code_of(lambda: browse(str(box), "up")) == (403, "PATH_ESCAPES")


def test_symlinks_inside_the_sandbox_are_followed(work_dir: Path) -> None:
    box = Path(sandbox(work_dir))
    (box / "out").symlink_to("stdout")
    (box / "s").symlink_to(box / "sub")
    assert read(str(box), "out")["data"] == "hello\nworld\n"
    assert [e["name"] for e in browse(str(box), "s")] == ["deeper", "note.txt"]


def test_a_sandbox_reached_through_a_symlinked_work_dir_still_works(tmp_path: Path, work_dir: Path) -> None:
    link = tmp_path / "link-to-work"
    link.symlink_to(work_dir)
    assert read(sandbox_dir(str(link), FID, TID), "stdout")["data"] == "hello\nworld\n"


# --- browse ---------------------------------------------------------------------------------------


def test_browse_lists_entries_sorted_with_their_metadata(work_dir: Path) -> None:
    entries = browse(sandbox(work_dir))
    assert [e["name"] for e in entries] == ["stderr", "stdout", "sub"]
    stdout = entries[1]
    assert stdout["path"] == "stdout" and stdout["size"] == 12 and not stdout["is_dir"]
    assert stdout["mode"].startswith("-r") and isinstance(stdout["mtime"], float)
    assert entries[2]["is_dir"] and entries[2]["mode"].startswith("d")
    sub = browse(sandbox(work_dir), "sub")
    assert [(e["name"], e["path"], e["is_dir"]) for e in sub] == [("deeper", "sub/deeper", True),
                                                                  ("note.txt", "sub/note.txt", False)]


def test_browse_lists_a_symlink_as_itself(work_dir: Path) -> None:
    box = Path(sandbox(work_dir))
    (box / "leak").symlink_to(work_dir / "secret")
    leak = next(e for e in browse(str(box)) if e["name"] == "leak")
    assert leak["mode"].startswith("l") and not leak["is_dir"]


def test_browse_errors(work_dir: Path) -> None:
    assert code_of(lambda: browse(sandbox(work_dir), "nope")) == (404, "NO_SUCH_FILE")
    assert code_of(lambda: browse(sandbox(work_dir), "stdout")) == (400, "NOT_A_DIRECTORY")


# --- read -----------------------------------------------------------------------------------------


def test_read_whole_file_and_pages(work_dir: Path) -> None:
    box = sandbox(work_dir)
    assert read(box, "stdout") == {"data": "hello\nworld\n", "offset": 0, "next_offset": 12, "size": 12, "eof": True}
    first = read(box, "stdout", 0, 5)
    assert first == {"data": "hello", "offset": 0, "next_offset": 5, "size": 12, "eof": False}
    assert read(box, "stdout", 5, 100)["data"] == "\nworld\n"
    assert read(box, "stdout", 12) == {"data": "", "offset": 12, "next_offset": 12, "size": 12, "eof": True}
    assert read(box, "stdout", 50)["data"] == "" and read(box, "stdout", 50)["eof"]
    assert read(box, "stderr") == {"data": "", "offset": 0, "next_offset": 0, "size": 0, "eof": True}


def test_offset_minus_one_returns_only_the_size(work_dir: Path) -> None:
    assert read(sandbox(work_dir), "stdout", -1) == {"data": "", "offset": 12, "next_offset": 12, "size": 12,
                                                     "eof": True}


def test_length_is_capped(work_dir: Path) -> None:
    box = Path(sandbox(work_dir))
    (box / "big").write_bytes(b"x" * (MAX_READ + 10))
    chunk = read(str(box), "big", 0, MAX_READ * 4)
    assert len(chunk["data"]) == MAX_READ and chunk["next_offset"] == MAX_READ and not chunk["eof"]
    assert read(str(box), "big", chunk["next_offset"])["data"] == "x" * 10


def test_a_chunk_never_splits_a_utf8_character(work_dir: Path) -> None:
    box = Path(sandbox(work_dir))
    text = "h\u00e9llo \u20ac \U0001f600 end"
    (box / "utf8").write_bytes(text.encode())
    for length in range(1, 8):
        out, offset = "", 0
        while True:
            chunk = read(str(box), "utf8", offset, length)
            out += chunk["data"]
            assert chunk["next_offset"] > offset or chunk["eof"]
            offset = chunk["next_offset"]
            if chunk["eof"] and offset == chunk["size"]:
                break
        if length >= 4:
            assert out == text
        else:  # a character longer than ``length`` is consumed anyway (replaced), never stalls
            assert out.endswith(" end")


def test_an_incomplete_character_at_the_end_waits_for_the_rest(work_dir: Path) -> None:
    box = Path(sandbox(work_dir))
    (box / "growing").write_bytes(b"ab\xe2\x82")  # the task is writing a euro sign
    chunk = read(str(box), "growing")
    assert chunk["data"] == "ab" and chunk["next_offset"] == 2 and chunk["eof"]
    with open(box / "growing", "ab") as f:
        f.write(b"\xac!")
    assert read(str(box), "growing", 2)["data"] == "\u20ac!"


def test_binary_data_is_replaced_not_fatal(work_dir: Path) -> None:
    box = Path(sandbox(work_dir))
    (box / "bin").write_bytes(b"\xff\xfe\x00ok")
    chunk = read(str(box), "bin")
    assert chunk["data"].endswith("\x00ok") and "\ufffd" in chunk["data"] and chunk["next_offset"] == 5


def test_read_errors(work_dir: Path) -> None:
    box = Path(sandbox(work_dir))
    os.mkfifo(box / "fifo")
    assert code_of(lambda: read(str(box), None)) == (400, "BAD_REQUEST")
    assert code_of(lambda: read(str(box), "missing")) == (404, "NO_SUCH_FILE")
    assert code_of(lambda: read(str(box), "sub")) == (400, "IS_A_DIRECTORY")
    assert code_of(lambda: read(str(box), "fifo")) == (400, "NOT_A_FILE")  # would block the agent
    assert code_of(lambda: read(str(box), "stdout", -2)) == (400, "BAD_REQUEST")
    assert code_of(lambda: read(str(box), "stdout", 0, -1)) == (400, "BAD_REQUEST")
    assert code_of(lambda: read(str(box), "stdout/x")) == (400, "NOT_A_DIRECTORY")


# --- the HTTP skin --------------------------------------------------------------------------------


def get(work_dir: Path, endpoint: str, **args: str) -> tuple[int, Any]:
    root = build_root(str(work_dir), lambda: {"healthy": True})
    segments = endpoint.strip("/").split("/")
    request = DummyRequest([s.encode() for s in segments])
    request.uri = request.path = endpoint.encode()
    for key, value in args.items():
        request.addArg(key.encode(), value.encode())
    resource = root
    while request.postpath and not getattr(resource, "isLeaf", False):
        resource = resource.getChildWithDefault(request.postpath.pop(0), request)
    body = resource.render(request)
    return request.responseCode or 200, json.loads(body)


def test_http_read_browse_and_health(work_dir: Path) -> None:
    code, doc = get(work_dir, "/files/read", framework_id=FID, task_id=TID, path="stdout", offset="6", length="3")
    assert code == 200 and doc["data"] == "wor" and doc["offset"] == 6
    code, doc = get(work_dir, "/files/browse", framework_id=FID, task_id=TID, path="sub")
    assert code == 200 and [e["name"] for e in doc] == ["deeper", "note.txt"]
    assert get(work_dir, "/health") == (200, {"healthy": True})


def test_http_errors_are_json_naming_the_problem(work_dir: Path) -> None:
    code, doc = get(work_dir, "/files/read", framework_id=FID, task_id=TID, path="../secret")
    assert code == 400 and doc["reason"] == "BAD_PATH" and "'..'" in doc["error"]
    code, doc = get(work_dir, "/files/read", framework_id=FID, task_id=TID, path="stdout", offset="x")
    assert code == 400 and "offset" in doc["error"]
    code, doc = get(work_dir, "/files/read", task_id=TID, path="stdout")
    assert code == 400 and "framework_id" in doc["error"]
    code, doc = get(work_dir, "/files/browse", framework_id=FID, task_id="nope")
    assert code == 404 and doc["reason"] == "NO_SANDBOX"
    code, doc = get(work_dir, "/nothing/here")
    assert code == 404 and "/files/read" in doc["endpoints"]


def test_a_symlink_swapped_in_after_the_check_is_still_refused(work_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The task may replace a checked file with a symlink before the agent opens it: what is
    opened is checked again, on the descriptor."""
    import tepui.agent.sandbox.files_http as files

    box = Path(sandbox(work_dir))
    (box / "swapped").symlink_to(work_dir / "secret")
    monkeypatch.setattr(files, "confine", lambda sandbox, relative: os.path.join(sandbox, relative or ""))
    assert code_of(lambda: read(str(box), "swapped")) == (403, "PATH_ESCAPES")


# --- behind the HTTP guard, as the agent serves it ------------------------------------------------


def test_files_api_with_read_auth_token_needs_the_clusters_token_but_health_does_not(work_dir: Path) -> None:
    from tepui.sdk.http_security import GuardedSite, HttpPolicy
    from tests.http_wire import clock, exchange

    token = "cluster-token-0123456789"
    site = GuardedSite(build_root(str(work_dir), lambda: {"healthy": True}), HttpPolicy(token, "token", service="agent"),
                       reactor=clock())
    path = f"/files/read?framework_id={FID}&task_id={TID}&path=stdout"
    refused = exchange(site, "GET", path)
    assert refused.code == 401 and "agent's --http-token-file" in refused.json()["error"]
    answer = exchange(site, "GET", path, token=token)
    assert answer.code == 200 and answer.json()["data"] == "hello\nworld\n"
    assert exchange(site, "GET", "/health").code == 200
    assert exchange(site, "DELETE", path, token=token).code == 405  # nothing on the agent mutates
    open_site = GuardedSite(build_root(str(work_dir), lambda: {"healthy": True}), HttpPolicy(), reactor=clock())
    assert exchange(open_site, "GET", path).code == 200  # the default: open reads, bound to 127.0.0.1
