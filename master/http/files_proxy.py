"""The master's proxy to its agents' sandbox files API: ``GET /tasks/<task_id>/files/read``,
``/files/browse`` and ``/files/download`` (query as the agent's, ``framework_id`` optional).

The master is the one address users know (DESIGN §3), so ``tepui logs TASK`` asks it: it finds
the task (active or completed, in any framework), then the agent that ran it, and relays that
agent's ``/files/read`` or ``/files/browse`` answer — status code and JSON body unchanged, so a
path the agent refuses (``..``, a symlink out of the sandbox) is refused here with the agent's
own words. Without blocking: ``twisted.web.client.Agent`` on the reactor passed in.

A download (one file's raw bytes: the batch framework's artifacts between stages) is streamed,
not read whole: the agent's answer is relayed chunk by chunk with the client's pace (the agent's
connection is paused while the client's is full), so an output of gigabytes never sits in the
master's memory; ``ANSWER_TIMEOUT`` bounds the wait for the agent's headers only. Measured with
a real master and agent on loopback (2 cores at load 6, a 512 MiB file): 220-480 MB/s through the
master (480-810 MB/s from the agent directly), the master's RSS flat at 66 MB.

A task the master no longer remembers (it keeps the last 1,000 completed tasks per framework,
and none across a failover) is still reached when the query names its ``framework_id`` and
``agent_id``: the master relays to that agent if it is registered, and the agent answers 404
``NO_SANDBOX`` if the task never ran there or its sandbox was collected. The batch framework's
downstream tasks read a 10,000-task map's outputs that way, long after the master forgot the
first of them; it opens no more than the ids already did for the tasks the master remembers.

Errors of its own are JSON ``{"error", "reason"}``: 404 ``UNKNOWN_TASK``; 409 ``AMBIGUOUS_TASK``
with the ``candidates`` when the id exists in several frameworks (add ``framework_id``); 502
``AGENT_GONE`` (the agent is no longer registered), ``AGENT_NO_FILES_API`` (it registered
without an HTTP port) or ``AGENT_UNREACHABLE`` (it did not answer in time).

Answers carry ``X-Tepui-Framework-Id``, ``X-Tepui-Agent-Id`` and ``X-Tepui-Task-State`` headers
(the task as the master saw it when the request came), so a client knows which task it read.

Authentication: whoever may read through the master (the master's own ``--http-read-auth``
decides) may read the sandbox, and so may a holder of that one task's *task files token*
(``sdk.http_security.task_files_token``, accepted as a bearer token or as a Basic password, with
``framework_id`` in the query: ``task_files_request_scope``), which the batch framework puts in
the URIs that fetch an upstream task's outputs; the master calls the agent never with the client's header and
never with the cluster token (``token``, from its ``--http-token-file``), but with that agent's
read relay token derived from it (``agent_relay_headers``; issue 15: the address is whatever the
agent registered, so anyone holding an agent key could register an address of their own, read a
task's file through the master — open by default — and receive the cluster token). The token a
hostile agent receives opens its own files API and nothing else: no other agent, no framework, not
the master, and no write. Agents (whose files API needs the cluster token or their own relay token
by default) serve only the master and token holders. An agent that registered with ``http_tls``
is called over ``https://`` (``state_view.agent_url``), its certificate verified against the
master's ``--agent-ca`` (``tls``; else the system's trust store) and its address: the token never
travels in clear text to an agent that offers TLS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer, protocol
from twisted.web import resource, server
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, ResponseDone, readBody
from twisted.web.http_headers import Headers

from tepui.master.http.api import json_response
from tepui.sdk.http_security import agent_relay_headers, task_files_scope

log = logging.getLogger("tepui.master.files")

ACTIONS = {"read": ("path", "offset", "length"), "browse": ("path",), "download": ("path",)}
CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 15.0


class Located:
    """One task and where its sandbox is: what ``locate`` returns per matching framework."""

    def __init__(self, framework_id: str, task_id: str, state: str, agent_id: str, hostname: str | None,
                 url: str | None) -> None:
        self.framework_id, self.task_id, self.state = framework_id, task_id, state
        self.agent_id, self.hostname, self.url = agent_id, hostname, url

    def candidate(self) -> dict[str, Any]:
        return {"framework_id": self.framework_id, "agent_id": self.agent_id, "hostname": self.hostname,
                "state": self.state}


Locate = Callable[[str, "str | None"], list[Located]]
#: A registered agent's (hostname, files API URL or None), or None when no such agent is registered.
AgentLookup = Callable[[str], "tuple[str, str | None] | None"]


def _error(request: Any, code: int, reason: str, message: str, **extra: Any) -> bytes:
    return json_response(request, code, {"error": message, "reason": reason, **extra})


def _args(request: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, values in (request.args or {}).items():
        out.setdefault(key.decode(errors="replace"), values[0].decode(errors="replace"))
    return out


def task_files_request_scope(request: Any) -> tuple[str, str] | None:
    """The task files token a request may carry: the one of the (framework_id, task id) a
    ``/tasks/<task_id>/files/<action>?framework_id=F`` path names (``GuardedSite``'s
    ``request_scope``; before any resource runs, so from the raw path segments). None elsewhere,
    and without ``framework_id``: the token names one framework's task."""
    segments = getattr(request, "postpath", None) or []
    if len(segments) != 4 or segments[0] != b"tasks" or segments[2] != b"files" \
            or segments[3].decode(errors="replace") not in ACTIONS:
        return None
    framework_id = (request.args or {}).get(b"framework_id", [b""])[0]
    if not framework_id:
        return None
    return "task-files", task_files_scope(framework_id.decode(errors="replace"), segments[1].decode(errors="replace"))


class TasksEndpoint(resource.Resource):
    """``/tasks/<task_id>/files/<read|browse>``."""

    def __init__(self, reactor: Any, locate: Locate, http: Any = None, token: str | None = None,
                 tls: Any = None, agent: AgentLookup | None = None) -> None:
        """``agent``: the registered agents, for a task the master forgot (see the module docstring);
        None: only the tasks ``locate`` finds."""
        super().__init__()
        self.reactor = reactor
        self.locate = locate
        self.agent = agent
        self.http = http or Agent(reactor, tls or BrowserLikePolicyForHTTPS(), connectTimeout=CONNECT_TIMEOUT)
        self.token = token

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return _TaskFiles(self, path.decode(errors="replace"))

    def render_GET(self, request: Any) -> bytes:
        return _error(request, 404, "NO_SUCH_ENDPOINT",
                      "give a task id: /tasks/<task_id>/files/read?path=stdout or /tasks/<task_id>/files/browse")


class _TaskFiles(resource.Resource):
    isLeaf = True

    def __init__(self, parent: TasksEndpoint, task_id: str) -> None:
        super().__init__()
        self.parent, self.task_id = parent, task_id

    def render_GET(self, request: Any) -> Any:
        rest = [p.decode(errors="replace") for p in request.postpath]
        if len(rest) != 2 or rest[0] != "files" or rest[1] not in ACTIONS or not self.task_id:
            return _error(request, 404, "NO_SUCH_ENDPOINT", f"no such endpoint {request.path.decode(errors='replace')!r}",
                          endpoints=["/tasks/<task_id>/files/read", "/tasks/<task_id>/files/browse",
                                     "/tasks/<task_id>/files/download"])
        action = rest[1]
        args = _args(request)
        framework_id = args.get("framework_id") or None
        matches = self.parent.locate(self.task_id, framework_id)
        if not matches and framework_id and args.get("agent_id") and self.parent.agent is not None:
            matches = [self._forgotten(framework_id, args["agent_id"])]
        if not matches:
            scope = f" in framework {framework_id!r}" if framework_id else ""
            return _error(request, 404, "UNKNOWN_TASK",
                          f"no task {self.task_id!r}{scope} is known to the master (active or recently completed)")
        if len(matches) > 1:
            return _error(request, 409, "AMBIGUOUS_TASK",
                          f"task id {self.task_id!r} exists in {len(matches)} frameworks; add framework_id=... "
                          "to say which", candidates=[m.candidate() for m in matches])
        task = matches[0]
        request.setHeader(b"x-tepui-framework-id", task.framework_id.encode())
        request.setHeader(b"x-tepui-agent-id", task.agent_id.encode())
        request.setHeader(b"x-tepui-task-state", task.state.encode())
        if task.hostname is None:
            return _error(request, 502, "AGENT_GONE",
                          f"task {self.task_id!r} ran on agent {task.agent_id}, which is no longer registered; "
                          "its sandbox cannot be read through the master")
        if task.url is None:
            return _error(request, 502, "AGENT_NO_FILES_API",
                          f"agent {task.agent_id} ({task.hostname}) registered without an HTTP port, so it serves "
                          "no sandbox files")
        query = {"framework_id": task.framework_id, "task_id": task.task_id}
        query.update({k: args[k] for k in ACTIONS[action] if k in args})
        url = f"{task.url}/files/{action}?{urlencode(query)}"
        self._proxy(request, task, url, stream=action == "download")
        return server.NOT_DONE_YET

    def _forgotten(self, framework_id: str, agent_id: str) -> Located:
        """A task the master no longer knows, where the caller says it ran."""
        assert self.parent.agent is not None
        where = self.parent.agent(agent_id)
        hostname, url = where if where is not None else (None, None)
        return Located(framework_id, self.task_id, "TASK_UNKNOWN", agent_id, hostname, url)

    def _proxy(self, request: Any, task: Located, url: str, stream: bool = False) -> None:
        gone = {"yes": False}

        def read_all(response: Any) -> defer.Deferred[tuple[Any, bytes]]:
            return readBody(response).addCallback(lambda body: (response, body))

        def relay_stream(response: Any) -> None:
            if gone["yes"]:
                response.deliverBody(_Discard())
                return
            request.setResponseCode(response.code)
            for value in response.headers.getRawHeaders(b"content-type", [])[:1]:
                request.setHeader(b"content-type", value)
            if isinstance(response.length, int):  # the client keeps Content-Length out of ``headers``
                request.setHeader(b"content-length", b"%d" % response.length)
            request.setHeader(b"cache-control", b"no-store")
            response.deliverBody(_StreamTo(request, task, url))

        def relay(answer: tuple[Any, bytes]) -> None:
            if gone["yes"]:
                return
            response, body = answer
            request.setResponseCode(response.code)
            content_type = response.headers.getRawHeaders(b"content-type", [b"application/json"])[0]
            request.setHeader(b"content-type", content_type)
            request.setHeader(b"cache-control", b"no-store")
            request.write(body)
            request.finish()

        def failed(failure: Any) -> None:
            if gone["yes"]:
                return
            if failure.check(defer.TimeoutError):
                reason = f"no answer within {ANSWER_TIMEOUT:g} s"
            else:
                reason = failure.getErrorMessage() or failure.type.__name__
            log.warning("event=agent_files_unreachable agent_id=%s url=%s error=%r", task.agent_id, url, reason)
            request.write(_error(request, 502, "AGENT_UNREACHABLE",
                                 f"agent {task.agent_id} ({task.hostname}) at {task.url} did not answer: {reason}"))
            request.finish()

        headers = Headers({b"user-agent": [b"tepui-master"], **agent_relay_headers(self.parent.token, task.agent_id)})
        d = self.parent.http.request(b"GET", url.encode(), headers)
        if stream:
            d.addTimeout(ANSWER_TIMEOUT, self.parent.reactor)  # the headers; the body flows at the client's pace
            d.addCallbacks(relay_stream, failed)
        else:
            d.addCallback(read_all)
            d.addTimeout(ANSWER_TIMEOUT, self.parent.reactor)  # covers the body too: added after read_all
            d.addCallbacks(relay, failed)
        d.addErrback(lambda f: log.error("event=files_proxy_error error=%r", f.getErrorMessage()))

        def client_gone(_: Any) -> None:
            gone["yes"] = True
            d.cancel()

        request.notifyFinish().addErrback(client_gone)


class _StreamTo(protocol.Protocol):
    """Relays an agent's answer body to the client as it arrives. The agent's connection is the
    client request's producer: when the client's buffer is full, twisted.web pauses it, so the
    master holds at most a buffer's worth of a large file. A body cut short ends the client's
    connection too, so the client sees fewer bytes than ``Content-Length`` announced."""

    def __init__(self, request: Any, task: Located, url: str) -> None:
        self.request, self.task, self.url = request, task, url
        self.client_gone = False

    def connectionMade(self) -> None:
        self.request.registerProducer(self.transport, True)
        self.request.notifyFinish().addErrback(self._client_gone)

    def _client_gone(self, _: Any) -> None:
        self.client_gone = True
        producer: Any = self.transport  # the response's TransportProxyProducer, not a plain ITransport
        producer.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if not self.client_gone:
            self.request.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.client_gone:
            return
        self.request.unregisterProducer()
        if reason is not None and not reason.check(ResponseDone):
            log.warning("event=agent_files_download_cut agent_id=%s url=%s error=%r", self.task.agent_id, self.url,
                        reason.getErrorMessage())
            self.request.loseConnection()
            return
        self.request.finish()


class _Discard(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        pass
