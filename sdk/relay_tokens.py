"""The tokens the master's proxies send and accept instead of the cluster token, pure (hashlib
and hmac only), so that a pure core can mint one: the batch framework's core puts a task files
token in the URIs that fetch an upstream task's outputs. :mod:`tepui.sdk.http_security` (the
HTTP guard, on twisted.web) checks them and re-exports these names; its docstring says what
each token opens.
"""

from __future__ import annotations

import hashlib
import hmac

READ_METHODS = frozenset({b"GET", b"HEAD"})

RELAY_ACCESS = ("read", "write")
# Who a relay token is for: the HMAC's domain string, and which accesses that kind's site accepts.
# A distinct domain per kind, so no framework id can ever name an agent's token (ids may hold
# ':' and anything else printable). Agents take reads only: the files proxy relays nothing else.
RELAY_KINDS: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "framework": (b"tepui-relay", RELAY_ACCESS),
    "agent": (b"tepui-agent-relay", ("read",)),
    "task-files": (b"tepui-task-files", ("read",)),
}


def relay_access(method: bytes) -> str:
    """Which relay token a call with ``method`` carries: ``read`` for GET and HEAD, else ``write``."""
    return "read" if method in READ_METHODS else "write"


def relay_token(cluster_token: str, scope: str, access: str, kind: str = "framework") -> str:
    """The token the master's proxies send instead of the cluster token (issue 15: the cluster
    token went to any ``webui_url`` a framework key holder announced, and to any files-API address
    an agent key holder registered): ``hex(HMAC-SHA256(key=cluster_token, domain + "\\0" + scope
    + "\\0" + access))``, all UTF-8, where ``domain`` is ``tepui-relay`` for a framework (``scope``
    its framework id) and ``tepui-agent-relay`` for an agent (``scope`` its agent id). Scoped by
    id, not name: names are not unique (a framework may subscribe under another's name while that
    one fails over), ids are the master's to issue. Split into ``read`` and ``write`` so that a
    framework that only ever received reads (open by default) holds no token for a mutating call.
    One-way, so no relay token reveals the cluster token."""
    if access not in RELAY_ACCESS:
        raise ValueError(f"access must be one of {', '.join(RELAY_ACCESS)}, not {access!r}")
    if kind not in RELAY_KINDS:
        raise ValueError(f"kind must be one of {', '.join(RELAY_KINDS)}, not {kind!r}")
    message = RELAY_KINDS[kind][0] + b"\0" + scope.encode() + b"\0" + access.encode()
    return hmac.new(cluster_token.encode(), message, hashlib.sha256).hexdigest()


def task_files_scope(framework_id: str, task_id: str) -> str:
    """The scope of a task files token: both ids, the first length-prefixed so that no pair of
    ids can name another pair's scope."""
    return f"{len(framework_id)}:{framework_id}/{task_id}"


def task_files_token(cluster_token: str, framework_id: str, task_id: str) -> str:
    """The token that opens one task's sandbox files for reading through the master's files
    proxy, and nothing else (``http_security``'s docstring): the ``task-files`` read relay token."""
    return relay_token(cluster_token, task_files_scope(framework_id, task_id), "read", "task-files")
