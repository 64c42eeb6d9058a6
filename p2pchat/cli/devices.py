"""``p2pchat devices``: the devices of our account (protocol-spec/devices.md).

``list``, ``link``, ``rename`` and ``revoke`` talk to the running node over its RPC API,
like every other command. ``join CODE`` (and ``node run --link CODE``) runs on a *new*
home before any node: it dials the device that shows the code, receives the account and
writes this home's keystore.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, KeystoreExistsError, PermissionDeniedError
from ..identity.keyfile import PassphrasePurpose, write_keystore
from ._client import CALL_TIMEOUT, call, connected
from ._errors import sole_error
from ._output import emit_json, one_line, say, show_table, warn
from ._passphrase import keystore_passphrase
from ._state import CliState, json_option, now_ms, pass_state, system_rng
from .devices_history import HISTORY_HELP, link_history_since

if TYPE_CHECKING:
    from ..identity.keystore import UnlockedIdentity

__all__ = ["devices", "join_new_home"]

#: Seconds ``devices link`` waits for a new device (the code's own lifetime).
_LINK_WAIT_S = 300.0


@click.group()
def devices() -> None:
    """The devices of your account (link a new one, list, rename, revoke).

    \b
    On the device you have:  p2pchat devices link
    On the new device:       p2pchat node run --link CODE   (or: p2pchat devices join CODE)
    Both show a 6-digit confirmation code: compare them, then confirm on the first device.
    History (with the first device's consent): --history all|30d|none when linking
    (asked at a terminal), or later  p2pchat devices history-sync DEVICE;
    on the first device:  p2pchat devices history-allow

    DEVICE is a device key, a unique prefix of it (4+ hex digits) or a device's name.
    """


def _rows(found: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [
        (
            one_line(d["name"]) or "—",
            d["state"] + (" (this device)" if d["this_device"] else ""),
            d["peer_id"],
            d["device"],
        )
        for d in found
    ]


@devices.command("list")
@json_option
@pass_state
def list_(state: CliState) -> None:
    """List this account's devices (needs a running node).

    \b
    JSON: {"devices": [{"device", "peer_id", "name", "created", "state",
                        "this_device", "revoked_at"}, ...]}
    """
    found = call(state, "devices.list")
    if state.json:
        emit_json({"devices": found})
        return
    show_table(
        None,
        ("Name", "State", "Peer id", "Device key"),
        _rows(found),
        empty="No devices.",
        no_wrap=("Peer id", "Device key"),
    )


@devices.command()
@click.argument("device")
@click.argument("name")
@json_option
@pass_state
def rename(state: CliState, device: str, name: str) -> None:
    """Name one of your devices (the name stays on this device)."""
    found = call(state, "devices.rename", {"device": device, "name": name})
    if state.json:
        emit_json({"device": found})
    else:
        say(f"Device {found['device'][:16]}… is now called {one_line(found['name'])}.")


@devices.command()
@click.argument("device")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_state
def revoke(state: CliState, device: str, yes: bool) -> None:
    """Revoke a lost or retired device of your account.

    The account signs a revocation and publishes the new device list: contacts stop
    addressing the device and it can no longer link or revoke devices. It keeps what it
    already holds, and (as every linked device holds the account key) a thief who has it
    unlocked can still act as you: see `protocol-spec/devices.md` section 6.
    """
    if not yes and not state.json:
        click.confirm(f"Revoke device {device}? This cannot be undone", abort=True)
    found = call(state, "devices.revoke", {"device": device})
    if state.json:
        emit_json({"device": found})
    else:
        say(f"Revoked {one_line(found['name']) or found['device'][:16] + '…'}.")


def _show_code(code: str, expires: int) -> None:
    say("On the new device, run:")
    click.echo(f"    p2pchat node run --link {code}")  # one line, never wrapped: copy it whole
    try:
        import segno
    except ImportError:
        pass
    else:
        qr = segno.make(code, error="l")
        qr.terminal(compact=True)
    minutes = max(1, round((expires - now_ms()) / 60_000))
    say(f"The code works once, for {minutes} minutes. Waiting for the new device…")


@devices.command()
@click.option("--yes", is_flag=True, help="Accept without comparing codes (scripts and tests).")
@json_option
@pass_state
def link(state: CliState, yes: bool) -> None:
    """Show a one-time code that links a new device to this account, then confirm it.

    \b
    JSON (one line per step): {"code", "expires"}, then {"request": {"device", "name",
    "confirm"}}, then {"linked": {"device", "name", "refused"}}
    """
    from ..client import Gap

    with connected(state) as client:
        subscription = client.subscribe(["device.link_request", "device.linked"])
        invite = client.call("devices.link", {}, timeout=CALL_TIMEOUT)
        if state.json:
            emit_json({"code": invite["code"], "expires": invite["expires"]})
        else:
            _show_code(invite["code"], invite["expires"])
        with subscription:
            while True:
                try:
                    item = subscription.next(timeout=_LINK_WAIT_S)
                except TimeoutError:
                    raise PermissionDeniedError(
                        "no new device used the code in time; run `p2pchat devices link` again"
                    ) from None
                if isinstance(item, Gap):
                    continue
                data = item.data
                if item.type == "device.link_request":
                    accept = yes or _ask(data)
                    if state.json:
                        emit_json({"request": data})
                    client.call("devices.confirm", {"accept": accept}, timeout=CALL_TIMEOUT)
                elif item.type == "device.linked":
                    if state.json:
                        emit_json({"linked": data})
                    elif data.get("refused"):
                        warn("The new device was not linked.")
                    else:
                        say(f"Linked {one_line(data['name'])}: it now receives your account.")
                        _hint_history(client)
                    return


def _hint_history(client: Any) -> None:
    this = next(
        d for d in client.call("devices.list", {}, timeout=CALL_TIMEOUT) if d["this_device"]
    )
    say("To copy your message history to it, run there (you will be asked here):")
    click.echo(f"    p2pchat devices history-sync {this['device'][:16]} --since 30d")
    say("and here: p2pchat devices history-allow")


def _ask(data: dict[str, Any]) -> bool:
    say(
        f"A device called {one_line(data['name'])!r} wants to join. "
        f"Confirmation code: {data['confirm']}"
    )
    return click.confirm("Does the new device show the same code?", default=False)


@devices.command()
@click.argument("code")
@click.option("--name", default="new device", show_default=True, help="This device's name.")
@click.option(
    "--insecure-no-passphrase",
    "insecure",
    is_flag=True,
    help="Store the received keys WITHOUT a passphrase.",
)
@click.option("--history", "history", metavar="all|WINDOW|none", help=HISTORY_HELP)
@json_option
@pass_state
def join(state: CliState, code: str, name: str, insecure: bool, history: str | None) -> None:
    """Join the account of the device that shows CODE (on a new home, before `node run`).

    \b
    JSON: {"account_key", "fingerprint", "device_key", "history_since"}
    ("history_since": ms of the history asked for once the node runs, or null)
    """
    since = link_history_since(state, history)
    identity = join_new_home(state, code, name=name, insecure=insecure, history_since=since)
    saved = state.home.read_config()
    if not saved.get("bootstrap"):  # a later `node run` enters the network through it
        state.home.write_config({**saved, "bootstrap": link_bootstrap(code)})
    if state.json:
        emit_json(
            {
                "account_key": identity.account.account_key.hex(),
                "fingerprint": identity.account.fingerprint,
                "device_key": identity.device.public_key.hex(),
                "history_since": since,
            }
        )
    else:
        say(f"This device is now part of account {identity.account.fingerprint}.")
        say("Start it with `p2pchat node run`.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def link_bootstrap(code: str) -> list[str]:
    """The linking device's addresses in ``code``, with its peer id: a linked device that
    was given no ``--bootstrap`` enters the network (DHT, groups) through them."""
    from ..identity.peerid import peer_id_from_ed25519
    from ..protocol.device_link import LinkCode

    link = LinkCode.parse(code)
    peer = peer_id_from_ed25519(link.device_key)
    return [a if "/p2p/" in a else f"{a}/p2p/{peer}" for a in link.addrs]


def join_new_home(
    state: CliState,
    code: str,
    *,
    name: str,
    insecure: bool,
    values: dict[str, Any] | None = None,
    history_since: int | None = None,
) -> UnlockedIdentity:
    """Link a home without a keystore to the account behind ``code``; returns the identity
    written to its keystore (``values``: the home's saved node options, for the network).
    ``history_since``: the node asks the linking device for the DM history since then
    (ms; 0: all) once it runs; ``None``: it does not."""
    import trio

    from ..config import NodeConfig
    from ..protocol.device_link import LinkCode

    home = state.home
    if home.keystore_path.exists():
        raise KeystoreExistsError(
            f"{home.path} already holds an account. Link a new device from a new home "
            "(--home DIR, or P2PCHAT_HOME)."
        )
    link = LinkCode.parse(code)  # a mistyped code fails before any passphrase prompt
    protection = keystore_passphrase(state.passphrase_file, insecure=insecure)(
        PassphrasePurpose.CREATE
    )
    config = NodeConfig.from_mapping(home.path, values or home.read_config())
    seed = system_rng(32)

    async def main() -> UnlockedIdentity:
        from nacl.signing import SigningKey

        from ..devices import (
            LinkHistory,
            join_account,
            linked_identity,
            save_granted,
            save_link_history,
        )
        from ..net.libp2p_host import open_libp2p_network
        from ..protocol.device_history import MAX_HISTORY_MESSAGES
        from ..storage.sqlite import SqliteStore

        net = dataclasses.replace(config.net, port=0, mdns=False)
        device_key = bytes(SigningKey(seed).verify_key)

        def show(confirm: str) -> None:
            if not state.json:
                say(f"Confirmation code: {confirm}")
                say("Check that the other device shows the same code, and confirm there.")

        async with open_libp2p_network(seed, net, jitter=random.Random(), discover=False) as nw:
            joined = await join_account(
                nw,
                link,
                device_key=device_key,
                name=name,
                clock=now_ms,
                rng=system_rng,
                show_confirm=show,
            )
        identity = linked_identity(joined, device_seed=seed, rng=system_rng)
        write_keystore(home, identity.lock(protection, rng=system_rng), force=False, now=now_ms())
        store = await SqliteStore.open(home.path / "store.sqlite3", seal_key=identity.local_key)
        async with store:
            await save_granted(store, joined, names={device_key: name}, now=now_ms())
            if history_since is not None:
                wanted = LinkHistory(link.device_key, history_since, MAX_HISTORY_MESSAGES)
                await save_link_history(store, wanted)
        if joined.sync is not None and not state.json:
            say(
                f"Received {_count(len(joined.sync.contacts), 'contact')} and "
                f"{_count(len(joined.sync.groups), 'group')} (joined once the node runs)."
            )
        if history_since is not None and not state.json:
            say(
                "Once this device runs it asks the other one for your direct-message history:"
                " agree there with `p2pchat devices history-allow`."
            )
        return identity

    try:
        return trio.run(main)
    except BaseExceptionGroup as group:  # inside libp2p's nested nurseries
        sole = sole_error(group)
        if sole is not group:
            raise sole from None  # a typed error for the root command, or Ctrl-C: 130
        kinds = ", ".join(sorted({type(exc).__name__ for exc in group.exceptions}))
        raise ConfigError(f"linking failed ({kinds})") from group


from .devices_history import history_allow, history_sync  # noqa: E402 - sibling

devices.add_command(history_sync)
devices.add_command(history_allow)
