"""``tepui certs``: the master's CURVE key store — create it, issue and revoke client keys, list them.

The store is a directory (see :mod:`tepui.sdk.keys`): the master runs with ``--keys DIR``, and
re-reads the allow list when it changes, so ``issue`` and ``revoke`` take effect on a running
master within a second. The default store is the one ``tepui up`` uses.
"""

from __future__ import annotations

import os

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tepui.sdk.config import ClientConfig, ConfigError, load_client_config
from tepui.sdk.keys import KINDS, KeyStoreError, init_store, issue, read_allow_list, revoke


def default_store() -> tuple[str, str]:
    """The key store to use without ``--keys`` and where that choice came from: ``$TEPUI_KEYS``,
    else the ``keys_dir`` of the client configuration (``tepui up`` writes its own store there,
    whatever its --state-dir), else the store of ``tepui up`` with its default state dir."""
    explicit = os.environ.get("TEPUI_KEYS")
    if explicit:
        return explicit, "$TEPUI_KEYS"
    try:
        config = load_client_config()
    except ConfigError:
        config = ClientConfig()  # a broken configuration is reported by the commands that need it
    if config.keys_dir:
        return config.keys_dir, f"keys_dir in the client configuration {config.path}"
    from tepui.cli.up import default_state_dir

    return os.path.join(default_state_dir(5050), "keys"), "the default store of `tepui up`"


def _resolve_store(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """``--keys``, else :func:`default_store`, which must then hold a key store: a user whose
    cluster runs elsewhere is told which store was tried and how to name the right one."""
    if value:
        return value
    store, source = default_store()
    if not os.path.exists(os.path.join(store, "allow.yaml")):
        raise click.ClickException(
            f"no key store at {store} ({source}); pass --keys <state-dir>/keys with the --state-dir of your "
            "`tepui up` (or set $TEPUI_KEYS); a new store is made with `tepui certs init DIR`")
    return store


_keys_option = click.option("--keys", "store", default=None, callback=_resolve_store, type=click.Path(file_okay=False),
                            show_default="$TEPUI_KEYS, else keys_dir of the client configuration (written by "
                            "`tepui up`), else the key store of `tepui up`",
                            help="The key store directory (from `tepui certs init`).")


@click.group("certs")
def certs_command() -> None:
    """CURVE keys: the master's key pair and the allow list of agents, frameworks and clients.

    \b
    tepui certs init /etc/tepui/keys
    tepui certs issue --keys /etc/tepui/keys --agent node-7 --out node-7-keys
    tepui certs issue --keys /etc/tepui/keys --framework etl --principal etl --roles batch
    tepui certs revoke --keys /etc/tepui/keys node-7
    tepui certs rotate-master --keys /etc/tepui/keys --port 5052    (then --finish)
    """


@certs_command.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
def init_command(directory: str) -> None:
    """Create the master's key pair and an empty allow list in DIRECTORY (kept if present)."""
    try:
        keys = init_store(directory)
    except (KeyStoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"key store in {directory}; master public key {keys.public.decode()}")
    click.echo(f"start the master with --keys {directory}; issue client keys with "
               f"`tepui certs issue --keys {directory} --agent NAME`")


@certs_command.command("issue")
@_keys_option
@click.option("--agent", "agent", default=None, help="Issue an agent key with this name.")
@click.option("--framework", "framework", default=None, help="Issue a framework key with this name.")
@click.option("--client", "client", default=None, help="Issue a client key (CLI use: `tepui run`) with this name.")
@click.option("--principal", default=None, help="Who the key speaks for (default: its name). Give the old key's "
              "principal when rotating, so an agent keeps its id and a framework its principal.")
@click.option("--roles", default="", help="Comma-separated roles a framework key may subscribe in (default or '*': any).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Where to write the client key directory (default: KEYS/issued/NAME).")
def issue_command(store: str, agent: str | None, framework: str | None, client: str | None, principal: str | None,
                  roles: str, out: str | None) -> None:
    """Issue a client key pair and add its public key to the allow list."""
    chosen = [(kind, name) for kind, name in (("agent", agent), ("framework", framework), ("client", client)) if name]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --agent NAME, --framework NAME, --client NAME")
    kind, name = chosen[0]
    role_list = tuple(r.strip() for r in roles.split(",") if r.strip())
    if kind == "agent" and role_list:
        raise click.BadParameter("roles are for framework and client keys", param_hint="--roles")
    try:
        entry, directory = issue(store, name, kind, principal, role_list, out)
    except (KeyStoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"issued {kind} key {entry.name!r} (principal {entry.principal!r}) in {directory}")
    if kind == "agent":
        click.echo(f"start the agent with --keys {directory}")
    else:
        click.echo(f"frameworks use it through the SDK (SchedulerDriver(..., keys=tepui.sdk.load_client_keys({directory!r}))) "
                   "or a client configuration (client_keys: DIR)")


@certs_command.command("revoke")
@_keys_option
@click.argument("name")
def revoke_command(store: str, name: str) -> None:
    """Revoke the key NAME: a running master refuses it within a second (its connections are cut)."""
    try:
        entry = revoke(store, name)
    except (KeyStoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {entry.kind} key {entry.name!r}")


@certs_command.command("list")
@_keys_option
def list_command(store: str) -> None:
    """The allow list as a table."""
    try:
        allow = read_allow_list(os.path.join(store, "allow.yaml"))
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "KIND", "PRINCIPAL", "ROLES", "STATUS", "CREATED", "PUBLIC KEY"):
        table.add_column(column, no_wrap=True)
    for entry in sorted(allow.entries, key=lambda e: (KINDS.index(e.kind), e.name)):
        # Z85 keys contain [ ] which rich would read as markup, and :x: which it would read as an
        # emoji code: every cell is escaped, and the console prints no emoji.
        table.add_row(*(escape(cell) for cell in (
            entry.name, entry.kind, entry.principal, ",".join(entry.roles) or "*",
            "revoked" if entry.revoked else "active", entry.created or "-", entry.public_key)))
    Console(width=250, emoji=False).print(table)
    if not allow.entries:
        click.echo("(no keys yet: `tepui certs issue --agent NAME`)")


@certs_command.command("rotate-master")
@_keys_option
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Start a rotation: the master serves the next key on this TCP port (same host) until --finish.")
@click.option("--finish", is_flag=True, help="Finish the rotation: the next key becomes the master's key, served on "
              "its own port; clients that know only the old key are refused from then on.")
def rotate_master_command(store: str, port: int | None, finish: bool) -> None:
    """Rotate the master's key pair without downtime (docs/security.md "Key rotation").

    \b
    1. tepui certs rotate-master --keys DIR --port 5052
       a running master serves the next key on :5052 within a second; every client
       directory under DIR/issued now holds both master keys and the port
    2. give each client a directory holding both keys (re-issue it, or copy the updated
       one) and restart it, one at a time: it keeps working before and after step 3
    3. tepui certs rotate-master --keys DIR --finish
    """
    from tepui.sdk import rotation

    if finish == (port is not None):
        raise click.UsageError("give either --port PORT (start a rotation) or --finish")
    try:
        keys = rotation.finish(store) if finish else rotation.start(store, port)  # type: ignore[arg-type]
    except (KeyStoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if finish:
        click.echo(f"rotation finished: the master key is now {keys.public.decode()} (the old pair is in "
                   f"{os.path.join(store, 'retired')}); a running master serves it on its own port within a second")
        return
    assert keys.next_public is not None
    click.echo(f"rotation started: the next master key {keys.next_public.decode()} is served on port {port} "
               "within a second; the current key keeps being served on the master's port")
    click.echo(f"client directories under {os.path.join(store, 'issued')} now hold both keys; give every client "
               f"one of them, then `tepui certs rotate-master --keys {store} --finish`")
