"""The master's reverse proxy to framework web APIs: ``/frameworks/<name>/<path...>`` is relayed
to ``<webui_url>/<path...>`` of the framework subscribed with that ``FrameworkInfo.name``.

Why a proxy: the master is the one address users know (DESIGN §3). A framework announces where
its API listens (``webui_url``) when it subscribes, so ``tepui apps list`` asks
``http://MASTER:5080/frameworks/services/v1/apps`` and needs neither the framework's host nor
its port — they change whenever the framework is restarted elsewhere.

What is relayed: every method (GET, HEAD, POST, PUT, PATCH, DELETE) with its query string, body
and ``Content-Type`` (plus ``Accept``, ``Last-Event-ID`` and ``X-Forwarded-Prefix:
/frameworks/<name>``, for a framework that builds links); back come the framework's status
code, ``Content-Type`` and body unchanged, and a few harmless headers (``Cache-Control``,
``Location`` — made relative to the master when the framework gave a path —, ``Retry-After``,
``ETag``, ``Last-Modified``, ``Allow``). Bodies are relayed chunk by chunk as they arrive, never
buffered: a server-sent event stream (``text/event-stream``) reaches the client event by event,
with back-pressure (a slow client pauses the read from the framework), and a client that leaves
closes the framework connection at once, so streams never outlive their reader.

Time limits: 5 s to connect. A non-stream call has 30 s in all (``ANSWER_TIMEOUT``): a framework
that sent no answer by then is a 504, one that is still sending its body has the connection cut
(the status line is already out). A stream — the client asked with ``Accept: text/event-stream``,
or the answer is one — has no limit after the connection.

Where it may connect (issue 15, bug 4: a ``webui_url`` naming the master itself made one GET loop
through it without end): master/http/relay_guard.py checks the address really connected to — never
the master's own ports, loopback, link-local and this host's addresses only with
``--proxy-allow``. Each relayed call carries ``X-Tepui-Relay: <hops>``, and a call that arrives
already relayed (``MAX_HOPS``) is refused, so a loop the address check cannot see (the master
behind another name, a port forward, a framework relaying back) ends after one hop. Concurrent
relays are capped per framework and in all (``RelayPolicy.max_per_framework``, ``max_total``), so
neither one framework's callers nor a loop can take every file descriptor the master has.

Errors of its own are JSON ``{"error", "reason"}``: 404 ``UNKNOWN_FRAMEWORK`` (listing the names
that exist), 409 ``AMBIGUOUS_FRAMEWORK`` (several frameworks of that name, none or several of them
connected), 502 ``FRAMEWORK_NO_API`` (no ``webui_url``), ``FRAMEWORK_BAD_URL`` (not http(s)://),
``FRAMEWORK_URL_REFUSED`` (an address the master may not relay to), ``FRAMEWORK_UNREACHABLE``
(refused, connect timeout, connection dropped before an answer), 504 ``FRAMEWORK_TIMEOUT``, 508
``RELAY_LOOP`` (the call was relayed already), 503 ``RELAY_LIMIT`` (too many relays at once, with
``Retry-After``). Answers carry ``X-Tepui-Framework-Id``.

Authentication: the master's site policy (sdk/http_security.py) runs before this resource, so
mutating calls need the cluster token, reads follow ``--http-read-auth``, bodies are capped at
1 MiB. The client's ``Authorization`` header is never forwarded, and neither is the cluster token
(``token``): issue 15 found that anyone holding a framework key could announce a ``webui_url`` of
their own and receive it with one open GET. The master sends ``Authorization: Bearer <relay
token>`` instead (sdk/http_security.py ``relay_token``): an HMAC of the cluster token, the chosen
framework's id and ``read`` (GET, HEAD) or ``write`` (any other method, relayed only after the
master checked the caller's cluster token). A framework holding the token file derives the same
values and accepts them (``GuardedSite(..., relay_scope=)``); a hostile one learns a token that
is good only for calls to itself, and from reads only a read token.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, protocol
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.web import resource, server
from twisted.web.client import Agent, PotentialDataLoss, ResponseDone, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from tepui.master.http.api import json_response
from tepui.master.http.relay_guard import GuardedEndpoints, RelayPolicy, RelayRefused, Resolve, resolve
from tepui.sdk.http_security import relay_headers

log = logging.getLogger("tepui.master.frameworks")

CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 30.0
EVENT_STREAM = b"text/event-stream"
# x-tepui-user: the submitter a client names (the batch framework's fair share and history);
# the cluster token says who may call at all, not which person it is, so this is a claim, as
# a Mesos FrameworkInfo.user is (docs/security.md).
FORWARDED_REQUEST_HEADERS = (b"content-type", b"accept", b"last-event-id", b"x-tepui-user")
RELAYED_RESPONSE_HEADERS = (b"content-type", b"cache-control", b"retry-after", b"etag", b"last-modified", b"allow")
NO_BODY_CODES = frozenset({204, 304})
RELAY_HEADER = b"x-tepui-relay"  # how many times this call was relayed by a master
MAX_HOPS = 1  # a call may be relayed once: a call that arrives relayed is a loop (or a chain) and refused


@dataclass(frozen=True)
class FrameworkApi:
    """One framework the master knows and where its API is: what ``frameworks`` returns."""

    framework_id: str
    name: str
    webui_url: str | None
    connected: bool  # subscribed on a live connection (not waiting out its failover timeout)

    def candidate(self) -> dict[str, Any]:
        return {"framework_id": self.framework_id, "connected": self.connected, "webui_url": self.webui_url}


Frameworks = Callable[[], "list[FrameworkApi]"]


def framework_apis(core: Any) -> list[FrameworkApi]:
    """Every framework in the master's core (connected, or disconnected within its failover
    timeout) with its announced API. Read from the core's records by the shell, so the core
    itself needs no code for a concern of the HTTP side."""
    return [FrameworkApi(f.framework_id, f.info.name, f.info.webui_url, bool(f.active and f.peer is not None))
            for f in core.frameworks.values()]


def choose(apis: Iterable[FrameworkApi], name: str) -> list[FrameworkApi]:
    """The frameworks that may answer for ``name``: the one of that name, else the connected
    one among several (a framework that failed over leaves its old record behind until its
    failover timeout), else all of them — more than one left is ambiguous."""
    named = [api for api in apis if api.name == name]
    connected = [api for api in named if api.connected]
    return connected if len(named) > 1 and len(connected) == 1 else named


def upstream_url(webui_url: str, path: bytes, query: bytes) -> str:
    """``webui_url`` joined with the rest of the path (still percent-encoded, as the client sent
    it) and the query, unchanged."""
    url = webui_url.rstrip("/") + "/" + path.decode("ascii", "replace").lstrip("/")
    return url + ("?" + query.decode("ascii", "replace") if query else "")


def _error(request: Any, code: int, reason: str, message: str, **extra: Any) -> bytes:
    request.setHeader(b"cache-control", b"no-store")
    return json_response(request, code, {"error": message, "reason": reason, **extra})


@implementer(IBodyProducer)
class _Body:
    """The request body, already in memory (at most the site's 1 MiB), written in one go. Not
    ``FileBodyProducer``: that one schedules on the global reactor, not the one passed in."""

    def __init__(self, data: bytes) -> None:
        self.data, self.length = data, len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class FrameworksEndpoint(resource.Resource):
    """``/frameworks/<name>/...``."""

    def __init__(self, reactor: Any, frameworks: Frameworks, http: Any = None, token: str | None = None,
                 relay: RelayPolicy | None = None, resolver: Resolve = resolve) -> None:
        super().__init__()
        self.reactor = reactor
        self.frameworks = frameworks
        self.relay = relay or RelayPolicy()
        self.http = http or Agent.usingEndpointFactory(
            reactor, GuardedEndpoints(reactor, lambda: self.relay, CONNECT_TIMEOUT, resolver))
        self.token = token
        self.relaying: Counter[str] = Counter()  # framework id -> relays in progress

    def limit_reached(self, framework_id: str) -> str | None:
        """Why one more relay to this framework must wait, or None."""
        if self.relaying[framework_id] >= self.relay.max_per_framework:
            return f"{self.relaying[framework_id]} calls to this framework are being relayed already (the limit)"
        total = sum(self.relaying.values())
        if total >= self.relay.max_total:
            return f"{total} calls to frameworks are being relayed already (the master's limit)"
        return None

    def relay_started(self, framework_id: str) -> None:
        self.relaying[framework_id] += 1

    def relay_ended(self, framework_id: str) -> None:
        self.relaying[framework_id] -= 1
        if self.relaying[framework_id] <= 0:
            del self.relaying[framework_id]

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return _FrameworkApi(self, path.decode(errors="replace"))

    def render(self, request: Any) -> bytes:
        return self.no_name(request)

    def no_name(self, request: Any) -> bytes:
        names = sorted({api.name for api in self.frameworks()})
        return _error(request, 404, "NO_SUCH_ENDPOINT",
                      "give a framework name: /frameworks/<name>/<path>, e.g. /frameworks/services/v1/apps"
                      + (f"; frameworks: {', '.join(names)}" if names else "; no framework is subscribed"),
                      frameworks=names)


class _FrameworkApi(resource.Resource):
    isLeaf = True

    def __init__(self, parent: FrameworksEndpoint, name: str) -> None:
        super().__init__()
        self.parent, self.name = parent, name

    def _forward(self, request: Any) -> Any:
        if not self.name:
            return self.parent.no_name(request)
        hops = request.getHeader(RELAY_HEADER)
        if hops is not None:
            return _error(request, 508, "RELAY_LOOP",
                          f"this call was already relayed by a master ({RELAY_HEADER.decode()}: "
                          f"{hops.decode(errors='replace')[:20]}) and is not relayed again (at most {MAX_HOPS} hop): "
                          f"framework {self.name!r}'s webui_url, or something behind it, leads back to a master; "
                          "point webui_url at the framework's own API")
        apis = self.parent.frameworks()
        chosen = choose(apis, self.name)
        if not chosen:
            names = sorted({api.name for api in apis})
            known = (f"frameworks that are: {', '.join(repr(n) for n in names)}" if names
                     else "no framework is subscribed to this master")
            return _error(request, 404, "UNKNOWN_FRAMEWORK",
                          f"no active framework is named {self.name!r} ({known}); check the name in "
                          "/frameworks/<name>/ or start the framework", frameworks=names)
        if len(chosen) > 1:
            state = "several are connected" if any(api.connected for api in chosen) else "none is connected"
            return _error(request, 409, "AMBIGUOUS_FRAMEWORK",
                          f"{len(chosen)} active frameworks are named {self.name!r} and {state}, so the master "
                          "cannot tell which one to ask; tear down the ones you do not want or give each framework "
                          "a name of its own", candidates=[api.candidate() for api in chosen])
        api = chosen[0]
        request.setHeader(b"x-tepui-framework-id", api.framework_id.encode())
        if not api.webui_url:
            return _error(request, 502, "FRAMEWORK_NO_API",
                          f"framework {self.name!r} ({api.framework_id}) subscribed without a webui_url, so it "
                          "serves no API through the master; have it set FrameworkInfo.webui_url to the http:// "
                          "address of its API")
        parts = urlsplit(api.webui_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _error(request, 502, "FRAMEWORK_BAD_URL",
                          f"framework {self.name!r} ({api.framework_id}) announced webui_url {api.webui_url!r}, "
                          "which is not an http:// or https:// URL; the master proxies HTTP only — fix the "
                          "framework's webui_url")
        # Split the path as the client wrote it (twisted percent-decodes ``prepath``/``postpath``).
        raw = request.path.split(b"/")
        prefix, tail = b"/".join(raw[:1 + len(request.prepath)]), b"/".join(raw[1 + len(request.prepath):])
        query = request.uri.partition(b"?")[2]
        if any(byte < 0x21 or byte > 0x7E for byte in tail + query):
            return _error(request, 400, "BAD_PATH", "the path and query must be printable ASCII: percent-encode "
                                                    "other characters (e.g. %C3%A9 for é)")
        busy = self.parent.limit_reached(api.framework_id)
        if busy is not None:
            request.setHeader(b"retry-after", b"1")
            return _error(request, 503, "RELAY_LIMIT",
                          f"not relayed to framework {self.name!r} ({api.framework_id}): {busy}; retry in a "
                          "moment, and close event streams you no longer read")
        url = upstream_url(api.webui_url, tail, query)
        _Exchange(self.parent, request, api, url, prefix).start()
        return server.NOT_DONE_YET

    render_GET = render_HEAD = render_POST = render_PUT = render_PATCH = render_DELETE = _forward


class _Relay(protocol.Protocol):
    """Receives the framework's answer body and hands each chunk on as it arrives."""

    def __init__(self, exchange: _Exchange) -> None:
        self.exchange = exchange

    def connectionMade(self) -> None:
        self.exchange.body_started(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.exchange.chunk(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.exchange.body_done(reason)


class _Exchange:
    """One proxied call, from the request to the framework until the client has its answer or
    has left. It owns the deadline, so every way a call ends (answer, failure, timeout, client
    gone) cancels what is still running — nothing is left writing to a closed request."""

    def __init__(self, endpoint: FrameworksEndpoint, request: Any, api: FrameworkApi, url: str,
                 prefix: bytes) -> None:
        self.endpoint, self.request, self.api, self.url = endpoint, request, api, url
        self.prefix = prefix  # /frameworks/<name>, as the client wrote it
        self.reactor = endpoint.reactor
        self.pending: defer.Deferred[Any] | None = None
        self.upstream: Any = None  # the framework connection's producer, once the body flows
        self.deadline: Any = None
        self.settled = False  # the framework answered (status line) or the call failed
        self.done = False  # the client's request is finished (or cut): write nothing more
        self.timed_out = False
        self.counted = False  # holds one of the endpoint's relay slots

    def start(self) -> None:
        request = self.request
        self.endpoint.relay_started(self.api.framework_id)
        self.counted = True
        headers = Headers({b"user-agent": [b"tepui-master"], RELAY_HEADER: [b"1"],
                           **relay_headers(self.endpoint.token, self.api.framework_id, request.method)})
        for name in FORWARDED_REQUEST_HEADERS:
            values = request.requestHeaders.getRawHeaders(name)
            if values:
                headers.setRawHeaders(name, values)
        headers.setRawHeaders(b"x-forwarded-prefix", [self.prefix])
        data = b""
        if request.content is not None:
            request.content.seek(0)
            data = request.content.read()
        body = _Body(data) if data or request.method in (b"POST", b"PUT", b"PATCH") else None
        if not self._stream_requested():
            self.deadline = self.reactor.callLater(ANSWER_TIMEOUT, self._timeout)
        request.notifyFinish().addErrback(self._client_gone)
        # maybeDeferred: the agent refuses some URLs by raising, which is then one more failure.
        self.pending = defer.maybeDeferred(self.endpoint.http.request, request.method, self.url.encode(), headers,
                                           body)
        self.pending.addCallbacks(self._answered, self._failed)
        self.pending.addErrback(self._bug)

    def _stream_requested(self) -> bool:
        return any(EVENT_STREAM in value for value in self.request.requestHeaders.getRawHeaders(b"accept", []))

    def _answered(self, response: Any) -> None:
        self.settled = True
        if self.done:
            response.deliverBody(_Relay(self))  # stops it at once (body_started)
            return
        request = self.request
        request.setResponseCode(response.code, response.phrase or None)
        for name in RELAYED_RESPONSE_HEADERS:
            values = response.headers.getRawHeaders(name)
            if values:
                request.responseHeaders.setRawHeaders(name, values)
        location = response.headers.getRawHeaders(b"location", [None])[0]
        if location is not None:
            if location.startswith(b"/") and not location.startswith(b"//"):
                location = self.prefix + location
            request.setHeader(b"location", location)
        content_type = response.headers.getRawHeaders(b"content-type", [b""])[0]
        if not content_type:
            request.defaultContentType = None  # relay "no type" too, not twisted's text/html
        if content_type.split(b";")[0].strip().lower() == EVENT_STREAM:
            self._cancel_deadline()  # a stream lasts as long as its reader wants it
            request.write(b"")  # the status line and headers now, before the first event
        elif (isinstance(response.length, int) and request.method != b"HEAD"
              and response.code not in NO_BODY_CODES):
            request.setHeader(b"content-length", b"%d" % response.length)
        response.deliverBody(_Relay(self))

    def body_started(self, upstream: Any) -> None:
        self.upstream = upstream
        if self.done:
            upstream.stopProducing()
            return
        # Back-pressure: when the client reads slowly, twisted pauses this producer, which
        # pauses reading from the framework instead of buffering its stream in the master.
        self.request.registerProducer(upstream, True)

    def chunk(self, data: bytes) -> None:
        if not self.done:
            self.request.write(data)

    def body_done(self, reason: Any) -> None:
        self._cancel_deadline()
        self._release()
        if self.done:
            return
        self.done = True
        self.request.unregisterProducer()
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.request.finish()
            return
        # The framework died mid-answer: cut the client's connection too, so it sees a broken
        # answer (and an event-stream client reconnects) instead of a complete-looking one.
        log.warning("event=framework_api_answer_cut framework=%s url=%s error=%r", self.api.name, self.url,
                    _why(reason))
        self.request.loseConnection()

    def _failed(self, failure: Any) -> None:
        self.settled = True
        self._cancel_deadline()
        self._release()
        if self.done:
            return
        self.done = True
        request = self.request
        if failure.check(RelayRefused):
            refused = failure.value
            log.warning("event=framework_api_refused framework=%s url=%s address=%s:%d", self.api.name, self.url,
                        refused.address, refused.port)
            request.write(_error(request, 502, "FRAMEWORK_URL_REFUSED",
                                 f"framework {self.api.name!r} ({self.api.framework_id}) announced webui_url "
                                 f"{self.api.webui_url}, and {refused}; have the framework announce the address "
                                 "of its own API" + (", or, if the master should relay there, start it with "
                                                     f"--proxy-allow {_allow_hint(refused.address, refused.port)}"
                                                     if refused.allowable else "")))
        elif self.timed_out:
            log.warning("event=framework_api_timeout framework=%s url=%s", self.api.name, self.url)
            request.write(_error(request, 504, "FRAMEWORK_TIMEOUT",
                                 f"framework {self.api.name!r} ({self.api.framework_id}) at {self.api.webui_url} "
                                 f"accepted the call but sent no answer within {ANSWER_TIMEOUT:g} s; it may be "
                                 "overloaded or stuck — check its log and try again"))
        else:
            why = _why(failure)
            log.warning("event=framework_api_unreachable framework=%s url=%s error=%r", self.api.name, self.url, why)
            state = "" if self.api.connected else " (it is disconnected from the master)"
            request.write(_error(request, 502, "FRAMEWORK_UNREACHABLE",
                                 f"framework {self.api.name!r} ({self.api.framework_id}){state} did not answer at "
                                 f"{self.api.webui_url}: {why}; check that it runs and that its API listens on "
                                 "that address"))
        request.finish()

    def _timeout(self) -> None:
        self.deadline = None
        self.timed_out = True
        if not self.settled and self.pending is not None:
            # Not ``pending.called``: the agent's Deferred fires early, chained to the one
            # waiting for the answer; cancelling it forwards the cancellation there.
            self.pending.cancel()  # -> _failed, which answers 504
        elif not self.done and self.upstream is not None:
            # Too late for a 504: the status line is out. Cut both sides.
            log.warning("event=framework_api_timeout framework=%s url=%s while=body", self.api.name, self.url)
            self.done = True
            self._release()
            self.request.unregisterProducer()
            self.upstream.stopProducing()
            self.request.loseConnection()

    def _client_gone(self, failure: Any) -> None:
        """The client disconnected: stop asking the framework (or stop reading its stream)."""
        already = self.done
        self.done = True
        self._cancel_deadline()
        self._release()
        if not self.settled and self.pending is not None:
            self.pending.cancel()
        if self.upstream is not None:
            self.upstream.stopProducing()
        if not already:
            log.info("event=framework_api_client_left framework=%s url=%s", self.api.name, self.url)

    def _release(self) -> None:
        if self.counted:
            self.counted = False
            self.endpoint.relay_ended(self.api.framework_id)

    def _cancel_deadline(self) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.deadline = None

    def _bug(self, failure: Any) -> None:
        log.error("event=framework_proxy_error url=%s error=%r\n%s", self.url, failure.getErrorMessage(),
                  failure.getTraceback())
        self._release()
        if not self.done:
            self.done = True
            self.request.loseConnection()


def _allow_hint(address: str, port: int) -> str:
    """The ``--proxy-allow`` entry for one address (``address`` may read "name (ip)")."""
    ip = address.rpartition("(")[2].rstrip(")") if "(" in address else address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _why(failure: Any) -> str:
    """What went wrong, in words (twisted wraps connection failures in lists of failures)."""
    if failure.check(ConnectTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:g} s"
    if failure.check(ResponseNeverReceived) and failure.value.reasons:
        inner = failure.value.reasons[0]
        return f"the connection closed before an answer ({inner.getErrorMessage() or inner.type.__name__})"
    reasons = getattr(failure.value, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() or r.type.__name__ for r in reasons)
    return failure.getErrorMessage() or failure.type.__name__
