"""The agent's sandbox files API on twisted.web (Mesos ``/files/browse`` and ``/files/read``).

``GET /files/browse?framework_id=F&task_id=T[&path=sub/dir]`` lists a directory of the task's
sandbox (``<work_dir>/sandboxes/F/T/``); ``GET /files/read?framework_id=F&task_id=T&path=stdout
&offset=N&length=M`` returns ``{"data", "offset", "next_offset", "size", "eof"}`` — Mesos's
``data`` + ``offset`` shape, plus what a client needs to page without guessing: ``data`` is text,
and a chunk never ends inside a UTF-8 character, so ``next_offset`` (a byte offset) is where the
next read starts (``offset + len(data)`` is wrong as soon as a character takes two bytes).
``offset=-1`` returns only the size (Mesos convention: ``data`` is empty, ``offset`` is the size).
``GET /files/download?framework_id=F&task_id=T&path=P`` sends one regular file's bytes as they are
(``application/octet-stream``, with its ``Content-Length``), streamed from the open file with the
reader's pace (Mesos ``/files/download``): what the batch framework's downstream tasks fetch
(docs/batch.md, "Artifacts between stages"). A directory is refused (400 ``IS_A_DIRECTORY``,
saying to archive it): one answer is one file, whose size is known before it is sent.

Confinement: a path is relative to the sandbox; ``..`` components and absolute paths are refused
(400), and whatever a symlink says, the file actually opened must lie inside the sandbox (403) —
checked on the open descriptor (``/proc/self/fd``), so a task cannot swap a checked path for a
symlink between the check and the open. FIFOs and devices are refused (a FIFO would block the
agent). Errors are JSON ``{"error", "reason"}``, never a traceback.

Access, secure by default like the master's API (issue 15; ``files_policy``): every read but
``/health`` needs the cluster's bearer token (``--http-token-file``, the master's; operators and
``tepui logs`` straight to an agent send it) or this agent's own read relay token, which is what
the master's files proxy sends (``files_site``; never the cluster token, which a hostile agent
key holder would learn by registering an address of their own). Before the agent knows its id
(registration, or recovery from its checkpoint) it accepts the cluster token only; it never
accepts another agent's token, a framework's relay token or any write token. An agent started
without a token file serves no sandbox file to anyone
(401 ``NO_TOKEN_CONFIGURED``, saying how to give one) rather than to everyone; ``--http-read-auth
open`` opens it on purpose, and ``--insecure`` (tests) leaves it open by default. With
``--tls-cert/--tls-key`` the API is served over HTTPS only and the agent says so in its
registration (``AgentInfo.http_tls``), so the master calls it with ``https://``.

The logic is in pure functions (``sandbox_dir``, ``confine``, ``browse``, ``read``) raising
``FilesError``; the Resources are a thin HTTP skin over them. Reads are bounded (``MAX_READ``),
so serving them on the reactor thread is a short, bounded stall.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import stat
from collections.abc import Callable
from typing import Any

from twisted.web import resource, server

from tepui.sdk.http_security import GuardedSite, HttpPolicy, policy_from_flags

log = logging.getLogger("tepui.agent.files")

MAX_READ = 1024 * 1024  # bytes per /files/read answer, whatever ``length`` asks for
DEFAULT_HTTP_PORT = 5051  # DESIGN §3


class FilesError(Exception):
    """An answer other than 200: the HTTP code, a stable reason for programs, a message for people."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


# --- pure logic ---------------------------------------------------------------------------------


def _check_id(name: str, value: str | None) -> str:
    if not value:
        raise FilesError(400, "BAD_REQUEST", f"the query parameter {name} is required")
    if value in (".", "..") or "/" in value or "\0" in value:
        raise FilesError(400, "BAD_REQUEST", f"{name} {value!r} is not a valid id")
    return value


def sandbox_dir(work_dir: str, framework_id: str | None, task_id: str | None) -> str:
    """The sandbox of one task on this agent; 404 when there is none (never ran here, or its
    sandbox was garbage-collected)."""
    fid = _check_id("framework_id", framework_id)
    tid = _check_id("task_id", task_id)
    path = os.path.join(work_dir, "sandboxes", fid, tid)
    if not os.path.isdir(path):
        raise FilesError(404, "NO_SANDBOX", f"no sandbox for task {tid!r} of framework {fid!r} on this agent "
                                            "(it never ran here, or its sandbox was garbage-collected)")
    return path


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def confine(sandbox: str, relative: str | None) -> str:
    """The real path that ``relative`` names inside ``sandbox``.

    400 for an absolute path or a ``..`` component (never meaningful inside a sandbox); 403 when
    symlinks lead outside it. The empty path is the sandbox itself."""
    relative = relative or ""
    if "\0" in relative:
        raise FilesError(400, "BAD_PATH", "the path contains a NUL byte")
    if relative.startswith("/"):
        raise FilesError(400, "BAD_PATH", f"path {relative!r} must be relative to the task's sandbox (e.g. stdout)")
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise FilesError(400, "BAD_PATH", f"path {relative!r} may not contain '..'")
    root = os.path.realpath(sandbox)
    target = os.path.realpath(os.path.join(root, *parts))
    if not _inside(target, root):
        raise FilesError(403, "PATH_ESCAPES", f"path {relative!r} leads outside the task's sandbox")
    return target


def _check_opened(fd: int, root: str, relative: str) -> None:
    """What was really opened must be inside the sandbox (closes the check-then-open race)."""
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: the realpath check in ``confine`` is all we have
        return
    if not _inside(opened, root):
        raise FilesError(403, "PATH_ESCAPES", f"path {relative!r} leads outside the task's sandbox")


def _open(sandbox: str, relative: str, flags: int) -> int:
    target = confine(sandbox, relative)
    try:
        fd = os.open(target, flags | os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FilesError(404, "NO_SUCH_FILE", f"no file {relative or '.'!r} in the task's sandbox") from None
    except NotADirectoryError:
        raise FilesError(400, "NOT_A_DIRECTORY",
                        f"{relative!r} is not a directory (files are read with /files/read)") from None
    except PermissionError:
        raise FilesError(403, "PERMISSION_DENIED", f"the agent may not read {relative!r}") from None
    except OSError as exc:
        raise FilesError(400, "CANNOT_OPEN", f"cannot open {relative!r}: {exc.strerror or exc}") from None
    try:
        _check_opened(fd, os.path.realpath(sandbox), relative)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _entry(name: str, relative: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "name": name,
        "path": f"{relative.strip('/')}/{name}" if relative.strip("/") else name,
        "size": st.st_size,
        "mode": stat.filemode(st.st_mode),
        "mtime": st.st_mtime,
        "is_dir": stat.S_ISDIR(st.st_mode),
    }


def browse(sandbox: str, relative: str | None = None) -> list[dict[str, Any]]:
    """The entries of one directory of the sandbox, sorted by name. Symlinks are listed as
    themselves (``lstat``), never followed."""
    relative = relative or ""
    fd = _open(sandbox, relative, os.O_DIRECTORY)
    try:
        entries = []
        with os.scandir(fd) as listing:
            for item in listing:
                try:
                    entries.append(_entry(item.name, relative, item.stat(follow_symlinks=False)))
                except OSError:
                    continue  # removed while we listed it
    finally:
        os.close(fd)
    return sorted(entries, key=lambda e: e["name"])


def _decode(chunk: bytes, at_end: bool) -> tuple[str, int]:
    """(text, bytes consumed): an incomplete UTF-8 character at the end of the chunk is left for
    the next read; bytes that are not UTF-8 at all become U+FFFD."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(chunk, final=False)
    pending = len(decoder.getstate()[0])
    if pending and not text and not at_end:
        # ``length`` too small to hold one character: consume it anyway, never stall a reader.
        return chunk.decode("utf-8", "replace"), len(chunk)
    return text, len(chunk) - pending


def parse_int(name: str, value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise FilesError(400, "BAD_REQUEST", f"{name} must be an integer, got {value!r}") from None


def read(sandbox: str, relative: str | None, offset: int = 0, length: int = MAX_READ) -> dict[str, Any]:
    """Up to ``length`` (at most ``MAX_READ``) bytes of a sandbox file from byte ``offset``."""
    if not relative:
        raise FilesError(400, "BAD_REQUEST", "the query parameter path is required (e.g. path=stdout)")
    if offset < -1:
        raise FilesError(400, "BAD_REQUEST", f"offset must be >= 0 (or -1 for the size), got {offset}")
    if length < 0:
        raise FilesError(400, "BAD_REQUEST", f"length must be >= 0, got {length}")
    fd = _open(sandbox, relative, 0)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FilesError(400, "IS_A_DIRECTORY", f"{relative!r} is a directory: list it with /files/browse")
        if not stat.S_ISREG(st.st_mode):
            raise FilesError(400, "NOT_A_FILE", f"{relative!r} is not a regular file")
        size = st.st_size
        if offset == -1:
            return {"data": "", "offset": size, "next_offset": size, "size": size, "eof": True}
        chunk = os.pread(fd, min(length, MAX_READ), offset)
    finally:
        os.close(fd)
    size = max(size, offset + len(chunk))  # the file may have grown since fstat
    at_end = offset + len(chunk) >= size
    data, consumed = _decode(chunk, at_end)
    return {"data": data, "offset": offset, "next_offset": offset + consumed, "size": size, "eof": at_end}


def open_download(sandbox: str, relative: str | None) -> tuple[int, int]:
    """(open descriptor, size) of the regular file ``relative`` names, for ``/files/download``;
    the caller closes the descriptor."""
    if not relative:
        raise FilesError(400, "BAD_REQUEST", "the query parameter path is required (e.g. path=out.txt)")
    fd = _open(sandbox, relative, 0)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FilesError(400, "IS_A_DIRECTORY",
                             f"{relative!r} is a directory: a download is one file (archive it first, e.g. "
                             f"`tar czf {relative.rstrip('/')}.tgz {relative}`, and name the archive)")
        if not stat.S_ISREG(st.st_mode):
            raise FilesError(400, "NOT_A_FILE", f"{relative!r} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


# --- HTTP skin ----------------------------------------------------------------------------------


def files_policy(token_file: str | None, read_auth: str | None, insecure: bool) -> HttpPolicy:
    """Who may read sandbox files. ``read_auth`` None: ``token``, or ``open`` under ``--insecure``.
    Token mode without a token file closes the API (an explicit ``--http-read-auth token``
    without a file is a configuration error instead: the operator asked for something that
    cannot work)."""
    mode = read_auth or ("open" if insecure else "token")
    if mode == "token" and not token_file and read_auth is None:
        log.warning("event=files_api_closed hint=\"no --http-token-file: the sandbox files API refuses every "
                    "read (401), so `tepui logs` cannot read this agent's tasks; start it with the cluster's "
                    "token file (the master's --http-token-file)\"")
        return HttpPolicy(read_auth="token", service="agent")
    if mode == "open":
        log.warning("event=files_api_open hint=\"sandbox files (which may hold secrets a task printed) are served "
                    "to anyone who reaches the HTTP port; give --http-token-file outside tests\"")
    return policy_from_flags(token_file, mode, "agent")


def json_response(request: Any, code: int, document: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document, separators=(",", ":")).encode()


def query(request: Any) -> dict[str, str]:
    """The query string as single values (the first of repeated ones); 400 if not UTF-8."""
    out: dict[str, str] = {}
    for key, values in (request.args or {}).items():
        try:
            out.setdefault(key.decode(), values[0].decode())
        except UnicodeDecodeError:
            raise FilesError(400, "BAD_REQUEST", "query parameters must be UTF-8") from None
    return out


class _FilesEndpoint(resource.Resource):
    isLeaf = True

    def __init__(self, work_dir: str, action: str) -> None:
        super().__init__()
        self.work_dir, self.action = work_dir, action

    def render_GET(self, request: Any) -> Any:
        try:
            args = query(request)
            sandbox = sandbox_dir(self.work_dir, args.get("framework_id"), args.get("task_id"))
            if self.action == "download":
                return _send_file(request, *open_download(sandbox, args.get("path")))
            if self.action == "browse":
                document: Any = browse(sandbox, args.get("path"))
            else:
                document = read(sandbox, args.get("path"), parse_int("offset", args.get("offset"), 0),
                                parse_int("length", args.get("length"), MAX_READ))
        except FilesError as exc:
            return json_response(request, exc.code, {"error": exc.message, "reason": exc.reason})
        except Exception:
            log.exception("event=files_request_failed uri=%s", request.uri.decode(errors="replace"))
            return json_response(request, 500, {"error": "internal error; see the agent's log", "reason": "INTERNAL"})
        return json_response(request, 200, document)


def _send_file(request: Any, fd: int, size: int) -> Any:
    """Streams the open file to the client at the client's pace (:class:`_FileStream`), so a
    large output never sits in the agent's memory."""
    source = os.fdopen(fd, "rb")
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"application/octet-stream")
    request.setHeader(b"content-length", b"%d" % size)
    request.setHeader(b"cache-control", b"no-store")
    if request.method == b"HEAD":
        source.close()
        return b""
    _FileStream(source, request).start()
    return server.NOT_DONE_YET


class _FileStream:
    """A push producer of one file: writes ``CHUNK`` bytes at a time until the connection's
    buffer is full (twisted.web then calls ``pauseProducing``) and resumes when it drained.
    Not twisted's ``FileSender``: a pull producer is driven by the global reactor's cooperator,
    which a private reactor (tests) never runs, and a push producer needs no scheduler at all."""

    CHUNK = 64 * 1024

    def __init__(self, source: Any, request: Any) -> None:
        self.source, self.request = source, request
        self.paused = self.done = False

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.done:
            try:
                chunk = self.source.read(self.CHUNK)
            except OSError as exc:
                log.warning("event=files_download_failed uri=%s error=%r",
                            self.request.uri.decode(errors="replace"), str(exc))
                self._end(complete=False)
                return
            if not chunk:
                self._end(complete=True)
                return
            self.request.write(chunk)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        if not self.done:  # the client went away
            self.done = True
            self.source.close()

    def _end(self, complete: bool) -> None:
        self.done = True
        self.source.close()
        self.request.unregisterProducer()
        if complete:
            self.request.finish()
        else:  # fewer bytes than Content-Length said: cut the connection so the client knows
            self.request.loseConnection()


class _Health(resource.Resource):
    isLeaf = True

    def __init__(self, health: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self._health = health

    def render_GET(self, request: Any) -> bytes:
        return json_response(request, 200, self._health())


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return json_response(request, 404, {"error": f"no such endpoint {request.path.decode(errors='replace')!r}",
                                            "reason": "NO_SUCH_ENDPOINT", "endpoints": ENDPOINTS})


ENDPOINTS = ["/files/browse", "/files/download", "/files/read", "/health", "/usage"]


class _Dir(resource.Resource):
    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return _NotFound()

    def render_GET(self, request: Any) -> bytes:
        return json_response(request, 200, {"endpoints": ENDPOINTS})


def _put(parent: resource.Resource, path: bytes, child: resource.Resource) -> None:
    """``parent.putChild``, which takes an ``IResource``: a Resource is one by zope's
    ``@implementer``, which mypy does not read."""
    parent.putChild(path, child)  # type: ignore[arg-type]  # zope's @implementer: see the docstring


def build_root(work_dir: str, health: Callable[[], dict[str, Any]],
               usage: Callable[[], dict[str, Any]] | None = None) -> resource.Resource:
    root = _Dir()
    if usage is not None:
        _put(root, b"usage", _Health(usage))  # per-task cpu seconds and memory from the cgroups
    files = _Dir()
    _put(files, b"browse", _FilesEndpoint(work_dir, "browse"))
    _put(files, b"read", _FilesEndpoint(work_dir, "read"))
    _put(files, b"download", _FilesEndpoint(work_dir, "download"))
    _put(root, b"files", files)
    _put(root, b"health", _Health(health))
    return root


def files_site(root: resource.Resource, policy: HttpPolicy, agent_id: Callable[[], str | None],
               **kwargs: Any) -> GuardedSite:
    """The files API's site: ``policy``, plus the master's files-proxy token for ``agent_id()`` —
    this agent's id now, None until it registered or recovered one (then the cluster token only)."""
    return GuardedSite(root, policy, relay_scope=agent_id, relay_kind="agent", **kwargs)
