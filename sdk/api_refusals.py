"""What a framework's Python client tells its user when the master refuses a call before the
framework sees it: a 401 (the bearer token), or no framework of that name subscribed (the proxy's
404 ``UNKNOWN_FRAMEWORK``). Pure text.

Why in the SDK: the batch and cron clients (frameworks/*/client.py) import only ``tepui.sdk``,
and both must say the same thing, naming what to do next.
"""

from __future__ import annotations

import os

__all__ = ["TOKEN_ENV", "framework_missing", "token_refused"]

TOKEN_ENV = "TEPUI_HTTP_TOKEN"


def token_refused(token: str | None, detail: object) -> tuple[str, str]:
    """``(sentence, hint)`` for a 401: which token was refused (or that none was sent)."""
    where = ("the token in $TEPUI_HTTP_TOKEN was refused" if os.environ.get(TOKEN_ENV) else
             "the token was refused" if token else "no token was sent")
    return (f"the master wants a bearer token and {where}{': ' + str(detail) if detail else ''}.",
            f"Set ${TOKEN_ENV} to the contents of the master's --http-token-file (`tepui up` writes it to the client "
            "config for you).")


def framework_missing(master: str, framework: str, start: str) -> tuple[str, str]:
    """``(sentence, hint)`` when the master knows no framework ``framework``; ``start`` is the
    command that runs it."""
    return (f"the {framework} framework is not running: the master at {master} knows no framework named "
            f"{framework!r}.", f"Start it with `{start}` (`tepui up` starts one with the cluster), then try again.")
