"""What the ``tepui`` command groups over a framework's REST API share (``tepui jobs``,
``tepui cron``): the ``--http`` and ``--json`` options, printing an answer as JSON, and turning
the framework client's one error class into ``error:``/``field:``/``hint:`` lines and an exit
code — 1 when the API refused, 4 when it could not be reached (no master, or no framework
behind it), so a script tells a wrong request from a dead cluster.

Why the error is duck-typed (:class:`ApiFailure`): each framework's client is stdlib + SDK only
and defines its own error class (``BatchError``, ``CronError``) with the same fields.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import IO, Any, Protocol, TypeVar

import click

from tepui.cli.state import DEFAULT_HTTP, http_address

__all__ = ["EXIT_UNREACHABLE", "ApiCommandError", "ApiFailure", "UnreachableApiError", "api_errors", "http_option",
           "json_option", "print_json"]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_UNREACHABLE = 4


class ApiFailure(Protocol):
    message: str
    field: str | None
    hint: str | None

    @property
    def unreachable(self) -> bool: ...


class ApiCommandError(click.ClickException):
    """``error: <sentence>`` (plus ``field:`` and ``hint:`` lines), exit 1: the API refused."""

    def __init__(self, error: ApiFailure) -> None:
        super().__init__(error.message)
        self.error = error

    def show(self, file: IO[Any] | None = None) -> None:
        for label, value in (("error", self.error.message), ("field", self.error.field), ("hint", self.error.hint)):
            if value:
                click.echo(f"{label}: {value}", err=True)


class UnreachableApiError(ApiCommandError):
    """The API could not be reached (no master, or no framework behind it): exit 4."""

    exit_code = EXIT_UNREACHABLE


def api_errors(error_type: type[Exception]) -> Callable[[F], F]:
    """A decorator: the client's ``error_type`` raised by the command becomes its exit."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except error_type as exc:
                failure: ApiFailure = exc  # type: ignore[assignment]  # error_type has ApiFailure's fields
                raise (UnreachableApiError if failure.unreachable else ApiCommandError)(failure) from None
        return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature click reads
    return decorate


def http_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--http", default=DEFAULT_HTTP, show_default=True, callback=http_address,
                        help="Master HTTP HOST:PORT or zk://H1:P1,H2:P2/PATH ($TEPUI_MASTER_HTTP).")(function)


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer as it is.")(function)


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))
