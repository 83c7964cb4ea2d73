"""What every Tepui HTTP API (the master's and the agents') does before a handler runs: bearer
tokens, body limits, JSON errors for every refusal, and TLS (issue 6, docs/security.md "HTTP").

Why one module for both processes: the same rules must hold on every port an operator exposes,
and a rule written twice drifts. The decision itself is a pure function (:func:`decide`) so it
is tested without sockets; :class:`GuardedSite` is the thin twisted.web skin that applies it.

The rules:

* A mutating call (any method but GET and HEAD) needs ``Authorization: Bearer <token>``, compared
  in constant time (``hmac.compare_digest``). Without a configured token, mutating calls are
  refused with a 401 that says how to configure one: secure by default.
* Reads are open (``read_auth="open"``, the default, as in Mesos) or need the token too
  (``"token"``). ``/health`` is always open so that load balancers and supervisors can probe it.
* There is one cluster token. The master's framework proxy never sends it to a framework: it
  sends a *relay token* derived from it (:func:`relay_token`), scoped to the framework it relays
  to and to reads or writes. A framework's site that knows its framework id (``relay_scope``)
  accepts the relay tokens for that id as the master vouching for a caller it authenticated; the
  read one only for reads (403 for a mutating call). The master's files proxy likewise sends an
  agent a read token of the agent kind, scoped to that agent's id, which only that agent's files
  API accepts. The master has no relay scope and refuses every relay token, so a framework or an
  agent that learns one can use it nowhere but at itself.
* One token opens something at the master: a *task files token* (:func:`task_files_token`),
  the read relay token of the ``task-files`` kind scoped to one (framework id, task id), which
  the master accepts for reading that one task's sandbox through its files proxy
  (``/tasks/<task_id>/files/...?framework_id=F``: the site's ``request_scope``). The batch
  framework, which holds the cluster token to check its own relay tokens, puts it in the URIs
  that fetch an upstream task's outputs, so artifacts travel when the master's reads need a token
  too; the fetcher sends a URI's password as HTTP Basic auth, so this kind is also read from a
  Basic header's password. It opens that task's files, for reads, and nothing else.
* A body larger than ``body_limit`` is 413; what exceeds the limit is never stored.
* A method a resource does not have is 405 naming the allowed ones; an unexpected exception is a
  JSON 500 with no internals (the traceback goes to the log, and the ``internal_errors``
  counter counts it). Handlers' own errors (400, 404, 422, ...) are theirs and pass unchanged.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.web import resource, server
from twisted.web.error import UnsupportedMethod

from tepui.sdk.relay_tokens import (  # noqa: F401  (re-exported: where callers have always found them)
    READ_METHODS,
    RELAY_ACCESS,
    RELAY_KINDS,
    relay_access,
    relay_token,
    task_files_scope,
    task_files_token,
)
from tepui.sdk.http_modes import READ_AUTH_MODES

log = logging.getLogger("tepui.http")

ALWAYS_OPEN = frozenset({"/health"})
DEFAULT_BODY_LIMIT = 1024 * 1024  # operator documents are a few KiB; 1 MiB leaves room and bounds memory


class TokenFileError(Exception):
    """The token file cannot be used; the message says which file and what to do."""


def load_token(path: str) -> str:
    """The token in ``path`` (surrounding whitespace ignored). A file others may read is used,
    with a warning: refusing would break a cluster over a chmod, while the warning says what to fix."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"--http-token-file {path}: cannot read it ({exc}); create it with e.g. "
                             f"`head -c 32 /dev/urandom | base64 > {path} && chmod 600 {path}`") from None
    if not token:
        raise TokenFileError(f"--http-token-file {path} is empty; put one line of at least 16 random characters "
                             "in it (e.g. `head -c 32 /dev/urandom | base64`)")
    if any(ord(c) < 33 or ord(c) > 126 for c in token):
        raise TokenFileError(f"--http-token-file {path}: the token must be one word of printable ASCII "
                             "(it travels in an HTTP header)")
    if len(token) < 16:
        raise TokenFileError(f"--http-token-file {path}: the token has {len(token)} characters; use at least 16")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("event=http_token_file_readable path=%s mode=%o hint=\"chmod 600 %s: others on this host can "
                    "read the token\"", path, stat.S_IMODE(mode), path)
    return token


@dataclass(frozen=True)
class HttpPolicy:
    """What a site requires. ``token`` None: no token configured (mutating calls all refused, and
    with ``read_auth="token"`` every read but ``/health`` too: an agent's files API started
    without a token file is closed, not open)."""

    token: str | None = None
    read_auth: str = "open"
    body_limit: int = DEFAULT_BODY_LIMIT
    service: str = "master"  # names the process in hints ("start the master with ...")

    def __post_init__(self) -> None:
        if self.read_auth not in READ_AUTH_MODES:
            raise ValueError(f"read_auth must be one of {', '.join(READ_AUTH_MODES)}, not {self.read_auth!r}")


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str
    message: str

    def document(self) -> dict[str, Any]:
        return {"error": self.message, "reason": self.reason}


def bearer(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def relay_headers(cluster_token: str | None, framework_id: str, method: bytes) -> dict[bytes, list[bytes]]:
    """The ``Authorization`` of the master's relay of a ``method`` call to ``framework_id``'s API:
    the relay token for reads or for writes, none without a cluster token."""
    return auth_headers(relay_token(cluster_token, framework_id, relay_access(method)) if cluster_token else None)


def agent_relay_headers(cluster_token: str | None, agent_id: str) -> dict[bytes, list[bytes]]:
    """The ``Authorization`` of the master's files proxy reading ``agent_id``'s sandbox files: that
    agent's read relay token (the proxy relays GETs only), none without a cluster token."""
    return auth_headers(relay_token(cluster_token, agent_id, "read", "agent") if cluster_token else None)


def basic_password(authorization: bytes | None) -> str | None:
    """The password of an ``Authorization: Basic base64(user:password)`` header, or None: how
    the fetcher sends the credential of a URI (``http://user:password@host/...``)."""
    if not authorization:
        return None
    scheme, _, value = authorization.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return password if colon and password else None


def _relayed(policy: HttpPolicy, given: str, relay_scope: str | None, relay_kind: str) -> str | None:
    """Which relay token ``given`` is (``read``/``write``) of those this site accepts, or None."""
    if relay_scope is None or policy.token is None:
        return None
    matches = [access for access in RELAY_KINDS[relay_kind][1]
               if hmac.compare_digest(given.encode("utf-8", "replace"),
                                      relay_token(policy.token, relay_scope, access, relay_kind).encode())]
    return matches[0] if matches else None


def decide(policy: HttpPolicy, method: bytes, path: str, authorization: bytes | None,
           body_too_large: bool = False, relay_scope: str | None = None,
           relay_kind: str = "framework", request_relay: tuple[str, str] | None = None) -> Refusal | None:
    """None when the request may reach its handler, else why not (pure: no I/O). ``relay_scope``:
    the id whose relay tokens of ``relay_kind`` this site accepts (a framework's own API: its
    framework id; an agent's files API: its agent id, reads only), else None. ``request_relay``:
    (kind, scope) of one more relay token this request may carry (the master's files proxy: the
    task files token of the task it names), also read from a Basic header's password."""
    mutating = method not in READ_METHODS
    needs_token = mutating or (policy.read_auth == "token" and path.rstrip("/") not in ALWAYS_OPEN)
    if needs_token:
        if policy.token is None:
            what = "changes the cluster" if mutating else "is token-protected"
            return Refusal(401, "NO_TOKEN_CONFIGURED",
                           f"{method.decode(errors='replace')} {path} {what} and needs a bearer token, "
                           f"but this {policy.service} has none configured: start it with --http-token-file PATH "
                           "(`tepui up` does this for you) and send `Authorization: Bearer <token>`")
        given = bearer(authorization)
        if given is None and request_relay is not None:
            given = basic_password(authorization)
        if given is None:
            what = "changes the cluster" if mutating else "is token-protected (--http-read-auth token)"
            return Refusal(401, "UNAUTHENTICATED",
                           f"{method.decode(errors='replace')} {path} {what}: send `Authorization: Bearer <token>` "
                           f"with the token in the {policy.service}'s --http-token-file (`tepui` commands read it "
                           "from the client config or $TEPUI_HTTP_TOKEN)")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), policy.token.encode()):
            relayed = _relayed(policy, given, relay_scope, relay_kind)
            if relayed is None and request_relay is not None:
                relayed = _relayed(policy, given, request_relay[1], request_relay[0])
            if relayed is None:
                return Refusal(401, "BAD_TOKEN",
                               f"the bearer token is not the {policy.service}'s: use the token in its "
                               "--http-token-file")
            if mutating and relayed == "read":
                instead = ("the master relays a mutating call with its write relay token only; call through the "
                           "master's /frameworks/<name>/ with the cluster token" if relay_kind == "framework"
                           and request_relay is None else "the master's files proxy only reads; send the cluster token")
                return Refusal(403, "READ_RELAY_TOKEN",
                               f"{method.decode(errors='replace')} {path} changes state, and the bearer token is the "
                               f"master's relay token for reads: {instead}")
    if body_too_large:
        return Refusal(413, "BODY_TOO_LARGE",
                       f"the request body exceeds {policy.body_limit} bytes; send a smaller document")
    return None


def policy_from_flags(token_file: str | None, read_auth: str, service: str) -> HttpPolicy:
    """The policy from ``--http-token-file`` and ``--http-read-auth``, or a clear exit: a bad
    token file never starts a process that would then refuse every call."""
    if read_auth == "token" and not token_file:
        raise SystemExit("--http-read-auth token needs --http-token-file (there is no token to check against)")
    try:
        token = load_token(token_file) if token_file else None
        policy = HttpPolicy(token=token, read_auth=read_auth, service=service)
    except (TokenFileError, ValueError) as exc:
        raise SystemExit(str(exc)) from None
    if token is None and service == "master":
        log.warning("event=http_no_token hint=\"mutating HTTP calls (/weights, /quota) are refused with 401; start "
                    "the master with --http-token-file PATH to allow them\"")
    return policy


# --- the twisted.web skin -----------------------------------------------------------------------


def json_body(request: Any, code: int, document: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document, separators=(",", ":")).encode()


class _Refused(resource.Resource):
    isLeaf = True

    def __init__(self, refusal: Refusal) -> None:
        super().__init__()
        self.refusal = refusal

    def render(self, request: Any) -> bytes:
        if self.refusal.code == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="tepui"')
        return json_body(request, self.refusal.code, self.refusal.document())


class GuardedRequest(server.Request):
    """A request that stores at most the site's body limit, answers 405 and 500 in JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_too_large = False
        self._body_bytes = 0

    def _limit(self) -> int:
        site = getattr(self.channel, "site", None)
        policy = getattr(site, "policy", None)
        return policy.body_limit if policy is not None else DEFAULT_BODY_LIMIT

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._limit():
            self.body_too_large = True
            length = 0  # never a temporary file for a body we will refuse
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_bytes += len(data)
        if self.body_too_large or self._body_bytes > self._limit():
            self.body_too_large = True
            return
        super().handleContentChunk(data)

    def render(self, resrc: Any) -> None:
        try:
            body = resrc.render(self)
        except UnsupportedMethod as exc:
            if self.method == b"HEAD" and b"GET" in exc.allowedMethods:
                super().render(resrc)  # twisted fakes HEAD with GET
                return
            methods: Sequence[bytes] = exc.allowedMethods  # Twisted declares it as ``()``
            allowed = sorted(m.decode() for m in methods)
            self.setHeader(b"allow", ", ".join(allowed).encode())
            body = json_body(self, 405, {
                "error": f"{self.method.decode(errors='replace')} is not allowed on "
                         f"{self.path.decode(errors='replace')}; use {' or '.join(allowed) or 'another endpoint'}",
                "reason": "METHOD_NOT_ALLOWED", "allowed": allowed})
        if body is server.NOT_DONE_YET:
            return
        if not isinstance(body, bytes):
            raise TypeError(f"{type(resrc).__name__} rendered {type(body).__name__}, not bytes")
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(b"" if self.method == b"HEAD" else body)
        self.finish()

    def processingFailed(self, reason: Any) -> Any:
        """A bug: logged with its traceback, counted, answered without internals."""
        site = getattr(self, "site", None) or getattr(self.channel, "site", None)
        if isinstance(site, GuardedSite):
            site.counters["internal_errors"] += 1
        log.error("event=http_internal_error method=%s path=%s error=%r\n%s", self.method.decode(errors="replace"),
                  self.path.decode(errors="replace"), reason.getErrorMessage(), reason.getTraceback())
        if self.startedWriting:  # too late for a status code: cut the answer short
            self.channel.loseConnection()
            return reason
        body = json_body(self, 500, {"error": "internal error while handling this request; the server logged the "
                                              "details (look for event=http_internal_error)", "reason": "INTERNAL"})
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()
        return reason


class GuardedSite(server.Site):
    """A Site that applies :func:`decide` before any resource is looked up."""

    def __init__(self, root: resource.Resource, policy: HttpPolicy,
                 relay_scope: Callable[[], str | None] | None = None, relay_kind: str = "framework",
                 request_scope: Callable[[Any], tuple[str, str] | None] | None = None, **kwargs: Any) -> None:
        """``relay_scope``: for a framework's API, its framework id now (None before the master
        issued one), so that calls the master relays with that id's relay tokens are accepted;
        for an agent's files API (``relay_kind="agent"``), its agent id now. ``request_scope``:
        the (kind, scope) of a relay token one request may carry, from the request (the master:
        the task files token of the task a files-proxy path names)."""
        if relay_kind not in RELAY_KINDS:
            raise ValueError(f"relay_kind must be one of {', '.join(RELAY_KINDS)}, not {relay_kind!r}")
        super().__init__(root, requestFactory=GuardedRequest, **kwargs)
        self.policy = policy
        self.relay_scope = relay_scope
        self.relay_kind = relay_kind
        self.request_scope = request_scope
        self.counters: Counter[str] = Counter()
        self.displayTracebacks = False

    def getResourceFor(self, request: Any) -> Any:
        refusal = decide(self.policy, request.method, request.path.decode(errors="replace"),
                         request.getHeader(b"authorization"), getattr(request, "body_too_large", False),
                         self.relay_scope() if self.relay_scope is not None else None, self.relay_kind,
                         self.request_scope(request) if self.request_scope is not None else None)
        if refusal is not None:
            self.counters[f"refused_{refusal.code}"] += 1
            request.site = self
            return _Refused(refusal)
        return super().getResourceFor(request)


def auth_headers(token: str | None) -> dict[bytes, list[bytes]]:
    """Headers for a call this process makes to another Tepui HTTP API: ``token`` when there is
    one. Never the cluster token to a framework or an agent: see :func:`relay_headers` and
    :func:`agent_relay_headers`."""
    return {b"authorization": [b"Bearer " + token.encode()]} if token else {}


def client_tls(ca_path: str | None, flag: str) -> Any:
    """The TLS policy for this process's calls to other Tepui HTTPS APIs (the master's files proxy
    calling agents): certificates verified against the CA certificates in ``ca_path`` (PEM, one or
    more), else against the system's trust store, and the name (or IP address) in the URL checked
    against the certificate, as a browser does. A file that is unusable stops the process here."""
    import re

    from twisted.internet import ssl
    from twisted.web.client import BrowserLikePolicyForHTTPS

    if ca_path is None:
        return BrowserLikePolicyForHTTPS()
    try:
        with open(ca_path, "rb") as handle:
            pem = handle.read()
        blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL)
        certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    except OSError as exc:
        raise SystemExit(f"{flag} {ca_path}: cannot read it: {exc.strerror}") from None
    except Exception as exc:  # OpenSSL's errors are many and untyped
        raise SystemExit(f"{flag} {ca_path}: not a usable PEM certificate ({exc})") from None
    if not certificates:
        raise SystemExit(f"{flag} {ca_path}: no PEM certificate in it (-----BEGIN CERTIFICATE----- ...)")
    return BrowserLikePolicyForHTTPS(trustRoot=ssl.trustRootFromCertificates(certificates))


def listen(reactor: Any, port: int, site: server.Site, interface: str = "", tls_cert: str | None = None,
           tls_key: str | None = None) -> Any:
    """Serves ``site`` on ``port``: HTTPS only when a certificate and key are given (the plain
    port is then not served at all, so no client falls back to cleartext), plain HTTP otherwise."""
    tls = tls_from_flags(tls_cert, tls_key)
    if tls is None:
        return reactor.listenTCP(port, site, interface=interface)
    return reactor.listenSSL(port, site, tls, interface=interface)


def tls_from_flags(tls_cert: str | None, tls_key: str | None) -> Any:
    """The server TLS context of ``--tls-cert/--tls-key``, None without them, or a clear exit."""
    if (tls_cert is None) != (tls_key is None):
        raise SystemExit("give both --tls-cert and --tls-key (PEM files), or neither")
    return tls_context(tls_cert, tls_key) if tls_cert and tls_key else None


def tls_context(cert_path: str, key_path: str) -> Any:
    """A server TLS context from PEM files, with a message naming the file when one is unusable."""
    from twisted.internet import ssl

    try:
        with open(cert_path, "rb") as cert_file, open(key_path, "rb") as key_file:
            cert, key = cert_file.read(), key_file.read()
        return ssl.PrivateCertificate.loadPEM(cert + b"\n" + key).options()
    except OSError as exc:
        raise SystemExit(f"--tls-cert/--tls-key: cannot read {exc.filename}: {exc.strerror}") from None
    except Exception as exc:  # OpenSSL's errors are many and untyped
        raise SystemExit(f"--tls-cert {cert_path} / --tls-key {key_path}: not a usable PEM certificate and "
                         f"private key ({exc})") from None
