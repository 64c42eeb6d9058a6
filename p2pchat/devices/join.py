"""The new device's side of linking (protocol-spec/devices.md section 4): dial the existing
device named by the link code, prove the code, show the confirmation, receive the account.

The new device runs this on a bare network (its device key is the host key) *before* it
runs a node: the account it will run under is the one it receives. The caller then writes
the keystore (:func:`linked_identity`) and starts the node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio

from p2pchat_crypto import cbor
from p2pchat_crypto.identity import Device

from ..dm.streams import reset_quietly
from ..errors import NetworkError, PeerUnreachableError
from ..identity.keystore import LOCAL_KEY_LEN, UnlockedIdentity
from ..identity.peerid import peer_id_from_ed25519
from ..net.base import Network
from ..protocol.device_link import (
    LINK_PROTOCOL,
    MAX_LINK_FRAME,
    LinkCode,
    LinkJoiner,
    LinkResult,
)
from ..protocol.device_sync import (
    MAX_SYNC_FRAME,
    SyncContent,
    decode_sync_content,
    decode_sync_frame,
)
from ..storage.base import Store
from ..storage.records import Contact, ContactState
from .roster import save_list, save_names

__all__ = ["Joined", "join_account", "linked_identity", "save_granted", "ADOPT_META"]

#: Groups the new device still has to join: a CBOR list of invite links or group ids.
ADOPT_META = "devices.adopt"
#: How long the new device waits for the contacts and groups after ``done``.
_SYNC_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Joined:
    """The account (``result``) and, if it came, the state synced from the other device."""

    result: LinkResult
    sync: SyncContent | None

    def __repr__(self) -> str:
        return f"<Joined {self.result!r}>"


_DIAL_TIMEOUT_S = 30.0
#: How long we wait for the other device's user to compare the codes (and a margin).
_GRANT_TIMEOUT_S = 150.0


async def join_account(
    network: Network,
    code: str | LinkCode,
    *,
    device_key: bytes,
    name: str,
    clock: Callable[[], int],
    rng: Callable[[int], bytes],
    show_confirm: Callable[[str], None],
    grant_timeout_s: float = _GRANT_TIMEOUT_S,
) -> Joined:
    """Link this device (``device_key``, the network's host key) to the account of the
    device that shows ``code``. ``show_confirm`` gets the confirmation code to display as
    soon as the join is sent. Raises ``WireError`` (a bad code or grant),
    ``PermissionDeniedError`` (refused, expired) or ``NetworkError``."""
    link = code if isinstance(code, LinkCode) else LinkCode.parse(code)
    joiner = LinkJoiner(link, device_key=device_key, name=name, rng=rng)
    peer = peer_id_from_ed25519(link.device_key)
    with trio.move_on_after(_DIAL_TIMEOUT_S) as dial:
        addrs = list(link.addrs)
        if not addrs:
            found = await network.dht.find_peer(peer)
            addrs = list(found.addrs) if found is not None else []
        await network.connect(peer, addrs)
        stream = await network.open_stream(peer, LINK_PROTOCOL)
    if dial.cancelled_caught:
        raise PeerUnreachableError("the device that shows the link code did not answer in time")
    try:
        await stream.write_frame(joiner.join_message())
        show_confirm(joiner.confirm)
        with trio.move_on_after(grant_timeout_s):
            frame = await stream.read_frame(MAX_LINK_FRAME)
            if frame is None:
                raise NetworkError("the other device closed the link without an answer")
            result = joiner.receive(frame, now=clock())
            await stream.write_frame(joiner.done_message())
            sync = None
            with trio.move_on_after(_SYNC_TIMEOUT_S):
                data = await stream.read_frame(MAX_SYNC_FRAME)
                if data is not None:
                    box = decode_sync_frame(data).box
                    sync = decode_sync_content(joiner.open(box))
            await stream.close()
            return Joined(result=result, sync=sync)
        raise NetworkError("no answer from the other device (was the link confirmed there?)")
    except BaseException:
        with trio.CancelScope(shield=True):
            await reset_quietly(stream)
        raise


def linked_identity(
    joined: Joined, *, device_seed: bytes, rng: Callable[[int], bytes]
) -> UnlockedIdentity:
    """The identity this device runs under after linking: the received account, its own
    device key (``device_seed``) under the received certificate, a fresh store key."""
    result = joined.result
    device = Device(signing_seed=device_seed, certificate=result.certificate)
    return UnlockedIdentity(account=result.account, device=device, local_key=rng(LOCAL_KEY_LEN))


async def save_granted(store: Store, joined: Joined, *, names: dict[bytes, str], now: int) -> None:
    """Keep what linking gave in the new device's store: the device list (so that its first
    publish carries every device even when the DHT is not reachable yet), the contacts,
    and the groups to join once the node runs (:data:`ADOPT_META`)."""
    await save_list(store, joined.result.devices)
    await save_names(store, names)
    if joined.sync is None:
        return
    for item in joined.sync.contacts:
        if await store.get_contact(item.account) is None:
            await store.put_contact(
                Contact(
                    account=item.account,
                    display_name=item.name,
                    state=ContactState(item.state),
                    verified=item.verified,
                    created_at=now,
                    updated_at=now,
                )
            )
    pending = [g.invite or g.group.hex() for g in joined.sync.groups]
    if pending:
        await store.put_meta(ADOPT_META, cbor.encode(pending))
