"""``p2pchat node run``: load (or create) the identity and start the node.

For now the node stops after loading its identity: networking arrives with the node
engineer's ``Node``. The identity part is :func:`p2pchat.keystore.open_or_create`, the
same call the real node will make; this command only supplies passphrases and prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from ..errors import ConfigError, KeystoreMissingError
from ..keystore import open_or_create
from ._output import emit_json, identity_rows, say, show_panel, warn_if_exposed
from ._passphrase import keystore_passphrase
from ._state import CliState, json_option, now_ms, pass_state, system_rng

__all__ = ["node", "DEFAULT_LISTEN", "DEFAULT_PORT"]

DEFAULT_LISTEN = "0.0.0.0"  # noqa: S104 - a messenger node listens for peers on purpose
DEFAULT_PORT = 0  # any free port


@click.group()
def node() -> None:
    """Run a p2pchat node."""


@node.command()
@click.option(
    "--create-identity",
    is_flag=True,
    help="Create the keystore on first start if the home has none.",
)
@click.option(
    "--insecure-no-passphrase",
    "insecure",
    is_flag=True,
    help="With --create-identity: store the new keys WITHOUT a passphrase.",
)
@click.option(
    "--listen", metavar="HOST", help=f"Address to listen on [saved; default {DEFAULT_LISTEN}]."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="TCP port to listen on, 0 for any [saved; default 0].",
)
@click.option(
    "--bootstrap",
    "bootstrap",
    multiple=True,
    metavar="MULTIADDR",
    help="A peer to join through, e.g. /ip4/1.2.3.4/tcp/4001/p2p/12D3KooW... "
    "(repeatable; saved, replacing the saved list).",
)
@json_option
@pass_state
def run(
    state: CliState,
    create_identity: bool,
    insecure: bool,
    listen: str | None,
    port: int | None,
    bootstrap: Sequence[str],
) -> None:
    """Load the identity and start the node.

    Options given here are saved in the home's config.json and used on later starts.
    Networking is not part of this release yet: the command shows who the node is and
    exits.

    \b
    JSON: {"home", "created" (bool), "identity": {...}, "config": {"listen", "port",
           "bootstrap"}, "network": "not-implemented"}
    (the "identity" keys are listed in `p2pchat keys --help`)
    """
    if insecure and not create_identity:
        raise ConfigError("--insecure-no-passphrase only applies with --create-identity.")
    for address in bootstrap:
        if not address.startswith("/") or "/p2p/" not in address:
            raise ConfigError(
                f"{address!r} is not a bootstrap address; expected a multiaddr ending in "
                "/p2p/<peer id>, such as /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW..."
            )
    home = state.home
    try:
        identity, created = open_or_create(
            home,
            passphrase=keystore_passphrase(state.passphrase_file, insecure=insecure),
            create=create_identity,
            rng=system_rng,
            now=now_ms(),
        )
    except KeystoreMissingError as exc:
        raise KeystoreMissingError(
            f"{exc} To create one on first start, run `p2pchat node run --create-identity`."
        ) from None
    warn_if_exposed(home)
    saved = home.read_config()
    config = _update_config(saved, listen=listen, port=port, bootstrap=bootstrap)
    if config != saved:
        home.write_config(config)
    effective = {"listen": DEFAULT_LISTEN, "port": DEFAULT_PORT, "bootstrap": [], **config}
    if state.json:
        emit_json(
            {
                "home": str(home.path),
                "created": created,
                "identity": identity.public.to_json_dict(),
                "config": effective,
                "network": "not-implemented",
            }
        )
        return
    rows = [
        *identity_rows(identity.public),
        ("Home", str(home.path)),
        ("Listen", f"{effective['listen']} port {effective['port'] or 'any'}"),
        ("Bootstrap", ", ".join(effective["bootstrap"]) or "none"),
    ]
    show_panel("New identity created" if created else "p2pchat node", rows)
    say(
        "Networking arrives with the node in a later release: nothing is listening yet. "
        "The identity above is the one the node will use."
    )


def _update_config(
    config: dict[str, Any], *, listen: str | None, port: int | None, bootstrap: Sequence[str]
) -> dict[str, Any]:
    updated = dict(config)
    if listen is not None:
        updated["listen"] = listen
    if port is not None:
        updated["port"] = port
    if bootstrap:
        updated["bootstrap"] = list(bootstrap)
    return updated
