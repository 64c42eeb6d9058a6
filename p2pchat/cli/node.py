"""``p2pchat node run``: load (or create) the identity, start the node, serve until a signal.

The identity comes from :func:`p2pchat.identity.keyfile.open_or_create`; options are saved in
the home's ``config.json`` and read back with :meth:`NodeConfig.from_mapping`, so a node
restarted without options behaves as before. The node itself is the embedding API
(:class:`p2pchat.node.Node`) with its RPC server on ``<home>/rpc.sock``: every other
command talks to it there. SIGINT (Ctrl-C) and SIGTERM stop it cleanly: the node
closes its connections and store and removes the socket, and the exit status is 0. A
second signal while stopping cancels the shutdown.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import NodeConfig
from ..errors import ConfigError, KeystoreMissingError, NetworkError
from ..identity.keyfile import open_or_create
from ..identity.keystore import UnlockedIdentity
from ..net.config import DEFAULT_PORT
from ._errors import sole_error
from ._logging import configure_logging
from ._output import (
    address_row,
    emit_json,
    identity_rows,
    say,
    show_lines,
    show_panel,
    warn_if_exposed,
)
from ._passphrase import keystore_passphrase
from ._state import CliState, json_option, now_ms, pass_state, system_rng
from .devices_history import HISTORY_HELP, link_history_since

if TYPE_CHECKING:
    from ..node import Node
    from ..rpc import RpcServer

__all__ = ["node", "DEFAULT_LISTEN", "DEFAULT_PORT", "serve", "run_until_signal"]

DEFAULT_LISTEN = "0.0.0.0"  # noqa: S104 - a messenger node listens for peers on purpose

logger = logging.getLogger("p2pchat.cli")
_SOCKET = "rpc.sock"  # p2pchat.rpc.transport.SOCKET_FILE, without importing trio


@click.group()
def node() -> None:
    """Run a p2pchat node."""


def _flag(name: str, help_text: str) -> Callable[[Any], Any]:
    """A --x/--no-x switch that is saved when given and left alone when not."""
    return click.option(f"--{name}/--no-{name}", default=None, help=f"{help_text} [saved]")


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
    help=f"TCP port to listen on, 0 for any free one [saved; default {DEFAULT_PORT}].",
)
@click.option(
    "--bootstrap",
    "bootstrap",
    multiple=True,
    metavar="MULTIADDR",
    help="A peer to join through, e.g. /ip4/1.2.3.4/tcp/4242/p2p/12D3KooW... "
    "(repeatable; saved, replacing the saved list).",
)
@_flag("nearby", "Find and announce peers on the local network (mDNS).")
@_flag(
    "relay-service",
    "Relay for others (circuit relay v2, within limits) while publicly reachable [default on].",
)
@_flag("relay", "Behind NAT, reserve with relays and be reached through them [default on].")
@_flag("hole-punching", "Try to turn relayed connections into direct ones [default on].")
@_flag("upnp", "Ask a UPnP router to forward the listening port [default off].")
@_flag("mailbox", "Volunteer as a mailbox: hold sealed messages for accepted contacts.")
@click.option(
    "--mailbox-use",
    "mailbox_use",
    multiple=True,
    metavar="PEER_ID|MULTIADDR",
    help="A contact's node whose mailbox you use while offline: its peer id (found in the "
    "DHT) or its address /ip4/.../tcp/PORT/p2p/12D3KooW... (repeatable; saved, replacing "
    "the saved list).",
)
@click.option("--display-name", metavar="NAME", help="Shown to contacts [saved].")
@click.option(
    "--rpc-tcp-port",
    type=click.IntRange(0, 65535),
    help="Also serve the local API on 127.0.0.1:PORT (0: any) [saved; default: unix socket only].",
)
@click.option(
    "--link",
    "link_code",
    metavar="CODE",
    help="First join the account of the device that shows CODE (`p2pchat devices link` "
    "there); this home must have no keystore yet.",
)
@click.option(
    "--history",
    "history",
    metavar="all|WINDOW|none",
    help=f"With --link: {HISTORY_HELP[0].lower()}{HISTORY_HELP[1:]}",
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
    nearby: bool | None,
    relay_service: bool | None,
    relay: bool | None,
    hole_punching: bool | None,
    upnp: bool | None,
    mailbox: bool | None,
    mailbox_use: Sequence[str],
    display_name: str | None,
    rpc_tcp_port: int | None,
    link_code: str | None,
    history: str | None,
) -> None:
    """Start the node and serve until Ctrl-C or SIGTERM.

    Options given here are checked first, then saved in the home's config.json once the
    node has started with them (a failed start saves nothing), and used on later starts.
    While the node runs, the other commands (contacts, dm, peers, status) talk to it.
    Logs go to stderr.

    \b
    JSON (one object on stdout once the node is up): {"home", "created" (bool),
      "identity": {...}, "listen_addrs", "rpc": {"socket", "tcp"}, "config"}
    (the "identity" keys are listed in `p2pchat keys --help`)
    """
    if insecure and not (create_identity or link_code):
        raise ConfigError("--insecure-no-passphrase only applies with --create-identity or --link.")
    if link_code and create_identity:
        raise ConfigError("--link receives an identity: it does not go with --create-identity.")
    if history is not None and not link_code:
        raise ConfigError(
            "--history only applies with --link; on a running node use "
            "`p2pchat devices history-sync DEVICE`."
        )
    for address in bootstrap:
        if not address.startswith("/") or "/p2p/" not in address:
            raise ConfigError(
                f"{address!r} is not a bootstrap address; expected a multiaddr ending in "
                "/p2p/<peer id>, such as /ip4/192.0.2.1/tcp/4242/p2p/12D3KooW..."
            )
    home = state.home
    if _answers(home.path / _SOCKET):
        raise ConfigError(
            f"a node is already running in {home.path}; stop it first, or talk to it with "
            "`p2pchat status`, `p2pchat dm ...`"
        )
    saved = home.read_config()
    values = _update_config(
        saved,
        listen=listen,
        port=port,
        bootstrap=bootstrap,
        nearby=nearby,
        mailbox=mailbox,
        mailbox_use=mailbox_use,
        display_name=display_name,
        rpc_tcp_port=rpc_tcp_port,
        nat={
            "relay_service": relay_service,
            "relay": relay,
            "hole_punching": hole_punching,
            "upnp": upnp,
        },
    )
    config = NodeConfig.from_mapping(home.path, values)  # refuse bad values before unlocking
    if link_code:
        from ..net import libp2p_host  # noqa: F401 - imported first: it resets libp2p's logger
        from .devices import join_new_home, link_bootstrap

        configure_logging(state.verbose)  # linking runs libp2p: its logging is tamed first
        name = display_name or socket.gethostname()[:64] or "new device"
        since = link_history_since(state, history)
        identity = join_new_home(
            state, link_code, name=name, insecure=insecure, values=values, history_since=since
        )
        created = True
        if not values.get("bootstrap"):  # the linking device is our way into the network
            values["bootstrap"] = link_bootstrap(link_code)
            config = NodeConfig.from_mapping(home.path, values)
    else:
        identity, created = _open_identity(state, create_identity, insecure)
    warn_if_exposed(home)
    configure_logging(state.verbose)
    effective = {"listen": DEFAULT_LISTEN, "port": DEFAULT_PORT, "bootstrap": [], **values}

    def announce(running: Node, server: RpcServer | None) -> None:
        configure_logging(state.verbose)  # again: importing libp2p reset its logger
        if values != saved:
            home.write_config(values)  # only options that started a node (and its API) are kept
        socket = str(server.unix_path) if server and server.unix_path else None
        tcp = list(server.tcp_address) if server and server.tcp_address else None
        if state.json:
            emit_json(
                {
                    "home": str(home.path),
                    "created": created,
                    "identity": identity.public.to_json_dict(),
                    "listen_addrs": running.listen_addrs,
                    "rpc": {"socket": socket, "tcp": tcp},
                    "config": effective,
                }
            )
            return
        listening, below = address_row(running.listen_addrs)
        rows = [
            *identity_rows(identity.public),
            ("Home", str(home.path)),
            ("Listening", listening),
            ("Bootstrap", "\n".join(effective["bootstrap"]) or "none"),
            ("Local API", socket or "off"),
        ]
        title = "Linked to the account" if link_code else "New identity created"
        show_panel(title if created else "p2pchat node", rows)
        show_lines(below)
        say("The node is running. Press Ctrl-C to stop it.")

    serve(config, identity, announce)


def _open_identity(
    state: CliState, create_identity: bool, insecure: bool
) -> tuple[UnlockedIdentity, bool]:
    try:
        return open_or_create(
            state.home,
            passphrase=keystore_passphrase(state.passphrase_file, insecure=insecure),
            create=create_identity,
            rng=system_rng,
            now=now_ms(),
        )
    except KeystoreMissingError as exc:
        raise KeystoreMissingError(
            f"{exc} To create one on first start, run `p2pchat node run --create-identity`."
        ) from None


def serve(
    config: NodeConfig,
    identity: UnlockedIdentity,
    announce: Callable[[Node, RpcServer | None], None],
) -> None:
    """Run the node in trio until SIGINT or SIGTERM (tests replace this function)."""
    import trio

    trio.run(run_until_signal, config, identity, announce)


async def run_until_signal(
    config: NodeConfig,
    identity: UnlockedIdentity,
    announce: Callable[[Node, RpcServer | None], None],
    *,
    node_factory: Callable[[NodeConfig, UnlockedIdentity], Node] | None = None,
) -> None:
    """Start the node and its RPC API (``config.rpc``), call ``announce`` once both are
    up, stop cleanly on the first signal.

    A signal during start-up cancels the start (the node cleans up what it opened); once
    the node is up, the first signal closes it gracefully and a second one cancels the
    closing. Errors come out bare, not wrapped in an exception group, so the root
    command reports them like any other.
    """
    try:
        await _run_until_signal(config, identity, announce, node_factory or _default_node)
    except BaseExceptionGroup as group:
        raise sole_error(group) from None


def _default_node(config: NodeConfig, identity: UnlockedIdentity) -> Node:
    from ..node import Node

    return Node(config, identity)


async def _run_until_signal(
    config: NodeConfig,
    identity: UnlockedIdentity,
    announce: Callable[[Node, RpcServer | None], None],
    make: Callable[[NodeConfig, UnlockedIdentity], Node],
) -> None:
    import signal

    import trio

    from ..api.serve import open_api  # the RPC stack, only for a node that runs
    from ._narrate import narrate

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stop = trio.Event()
            starting = trio.CancelScope()
            up = False

            async def watch() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not up:
                        logger.info("%s received while starting: giving up", name)
                        starting.cancel()
                    elif stop.is_set():
                        logger.warning("second signal: stopping without cleaning up")
                        nursery.cancel_scope.cancel()
                        return
                    else:
                        logger.info("%s received: stopping", name)
                    stop.set()

            nursery.start_soon(watch)
            with starting:
                node = make(config, identity)
                async with node.events() as told, node as running:
                    up = True
                    logger.info("node %s is up", running.peer_id)
                    if not running.listen_addrs:
                        raise NetworkError(
                            f"the node could not listen on {config.net.listen_hosts[0]} port "
                            f"{config.net.port}: is the port in use? Choose another with --port."
                        )
                    async with open_api(running) as server:
                        announce(running, server)
                        async with trio.open_nursery() as talking:  # ends before the node closes
                            talking.start_soon(narrate, running, told)
                            await stop.wait()
                            talking.cancel_scope.cancel()
                logger.info("node stopped")
            nursery.cancel_scope.cancel()


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the unix socket ``path``.

    Checked before unlocking the keystore, so a second ``node run`` on the same home
    stops at once instead of opening the store and the network next to the first.
    """
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False  # left by a crashed node: the server replaces it at start
    return True


def _update_config(
    config: dict[str, Any],
    *,
    listen: str | None,
    port: int | None,
    bootstrap: Sequence[str],
    nearby: bool | None,
    mailbox: bool | None,
    mailbox_use: Sequence[str],
    display_name: str | None,
    rpc_tcp_port: int | None,
    nat: dict[str, bool | None] | None = None,
) -> dict[str, Any]:
    updated = dict(config)
    updated.update({key: value for key, value in (nat or {}).items() if value is not None})
    given: dict[str, Any] = {
        "listen": listen,
        "port": port,
        "nearby": nearby,
        "mailbox": mailbox,
        "display_name": display_name,
        "rpc_tcp_port": rpc_tcp_port,
        "bootstrap": list(bootstrap) or None,
        "mailbox_use": list(mailbox_use) or None,
    }
    updated.update({key: value for key, value in given.items() if value is not None})
    return updated
