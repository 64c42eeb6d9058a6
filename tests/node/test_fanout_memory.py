"""Issue 18, fan-out: a direct message reaches every current device of the recipient and
the sender's other devices, each exactly once, over its own session; a revoked device
gets nothing new. Real nodes on the memory network, the DHT's device lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from nacl.signing import SigningKey

from p2pchat.devices import (
    LinkHistory,
    join_account,
    linked_identity,
    save_granted,
    save_link_history,
)
from p2pchat.errors import PermissionDeniedError
from p2pchat.events import DeviceLinked, DeviceLinkRequest, MessageReceived
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.memory import MemoryHub
from p2pchat.node import Node
from p2pchat.protocol.content import Content
from p2pchat.storage.memory import MemoryStore
from p2pchat.storage.records import DeliveryState, Direction, GroupStatus
from tests.conftest import DeterministicRng
from tests.node.harness import Peer, hub, mock_clock_ms, new_peer, running, wait_for


async def _confirm(first: Peer, shown: list[str]) -> None:
    node = first.node
    assert node is not None
    await wait_for(lambda: node.pending_link() is not None and bool(shown))
    request = [e for e in first.events if isinstance(e, DeviceLinkRequest)][-1]
    assert request.confirm == shown[0]
    node.confirm_link(True)


@asynccontextmanager
async def linked(
    h: MemoryHub, first: Peer, name: str, tmp: Path, *, history_since: int | None = None
) -> AsyncIterator[Peer]:
    """A new device of ``first``'s account, linked and running, as a :class:`Peer`
    (``history_since``: linked with ``--history``, it asks ``first`` for the DM history)."""
    assert first.node is not None
    seed = DeterministicRng(f"{first.name}-{name}")(32)
    key = bytes(SigningKey(seed).verify_key)
    linked_before = sum(isinstance(e, DeviceLinked) for e in first.events)
    invite = first.node.link_device()
    shown: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_confirm, first, shown)
        async with h.open_node(peer_id_from_ed25519(key)) as net:
            joined = await join_account(
                net,
                invite.code,
                device_key=key,
                name=name,
                clock=mock_clock_ms,
                rng=DeterministicRng(f"join-{name}"),
                show_confirm=shown.append,
            )
    await wait_for(lambda: sum(isinstance(e, DeviceLinked) for e in first.events) > linked_before)
    peer = Peer(
        name=name,
        identity=linked_identity(joined, device_seed=seed, rng=DeterministicRng(name)),
        store=MemoryStore(),
    )
    await save_granted(peer.store, joined, names={}, now=mock_clock_ms())
    if history_since is not None:
        wanted = LinkHistory(first.identity.device.public_key, history_since, 1000)
        await save_link_history(peer.store, wanted)
    async with running(h, peer, tmp):
        yield peer


def texts(peer: Peer) -> list[str]:
    """What the device announced as new messages (each exactly once, or it shows)."""
    return [e.text for e in peer.events if isinstance(e, MessageReceived)]


async def conversation(node: Node, account: bytes) -> list[tuple[Direction, str]]:
    return [
        (m.direction, Content.from_bytes(m.body, max_size=1 << 16).text)
        for m in await node.history(account)
    ]


def has_text(peer: Peer, text: str) -> bool:
    return text in texts(peer)


async def test_every_device_gets_every_message_once_and_a_revoked_one_nothing_new(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a1,
        running(h, bob, tmp_path) as b,
        linked(h, alice, "desktop", tmp_path) as alice2,
    ):
        a2 = alice2.node
        assert a2 is not None
        await b.add_contact(alice.account.hex(), name="Alice")
        await a1.add_contact(bob.account.hex(), name="Bob")

        # Bob -> Alice: both of Alice's devices, each once.
        hello = await b.send_dm(alice.account, "hello alice")
        await wait_for(lambda: has_text(alice, "hello alice") and has_text(alice2, "hello alice"))
        await wait_for(lambda: len(b._dms.targets.known(alice.account) or ()) == 2)

        # Alice (laptop) -> Bob: Bob's device, and a copy on Alice's desktop, shown as ours.
        reply = await a1.send_dm(bob.account, "hi bob, from my laptop")
        await wait_for(lambda: has_text(bob, "hi bob, from my laptop"))
        await wait_for(lambda: has_text(alice2, "hi bob, from my laptop"))
        copy = await a2.history(bob.account)
        assert [(m.message_id, m.direction, m.sender_account) for m in copy][-1] == (
            reply.message_id,
            Direction.OUT,
            alice.account,
        )

        async def both_delivered() -> bool:
            deliveries = await a1.dm_deliveries(reply.message_id)
            return {d.device: d.state for d in deliveries} == {
                bob.identity.device.public_key: DeliveryState.DELIVERED,
                alice2.identity.device.public_key: DeliveryState.DELIVERED,
            }

        with trio.fail_after(60):
            while not await both_delivered():  # noqa: ASYNC110 - polls the store
                await trio.sleep(0.05)
        stored = await a1.history(bob.account)
        assert [m.state for m in stored if m.message_id == reply.message_id] == [
            DeliveryState.DELIVERED
        ]
        # Bob's message: delivered on both of Alice's devices.
        with trio.fail_after(60):
            while len(await b.dm_deliveries(hello.message_id)) < 2 or any(  # noqa: ASYNC110
                d.state is not DeliveryState.DELIVERED
                for d in await b.dm_deliveries(hello.message_id)
            ):
                await trio.sleep(0.05)

        # The desktop answers too: Bob sees one conversation, the laptop the whole of it.
        await a2.send_dm(bob.account, "and from my desktop")
        await wait_for(lambda: has_text(bob, "and from my desktop"))
        await wait_for(lambda: has_text(alice, "and from my desktop"))
        whole = [
            (Direction.IN, "hello alice"),
            (Direction.OUT, "hi bob, from my laptop"),
            (Direction.OUT, "and from my desktop"),
        ]
        assert [(d, t) for d, t in await conversation(a1, bob.account)] == whole
        assert [(d, t) for d, t in await conversation(a2, bob.account)] == whole
        assert [t for _, t in await conversation(b, alice.account)] == [t for _, t in whole]
        # Exactly once on every device.
        assert texts(bob) == ["hi bob, from my laptop", "and from my desktop"]
        assert texts(alice) == ["hello alice", "and from my desktop"]
        assert texts(alice2) == ["hello alice", "hi bob, from my laptop"]

        # Revoke the desktop from the laptop: nothing new reaches it, from Bob or Alice.
        await a1.revoke_device(alice2.identity.device.public_key)
        assert alice2.identity.device.public_key not in a1._dms.targets.own_others()
        await b._dms.targets.resolve(alice.account)  # Bob's next look-up of the list
        assert b._dms.targets.known(alice.account) == (alice.identity.device.public_key,)
        after = await b.send_dm(alice.account, "after the revocation")
        mine = await a1.send_dm(bob.account, "mine, after the revocation")
        await wait_for(lambda: has_text(alice, "after the revocation"))
        await wait_for(lambda: has_text(bob, "mine, after the revocation"))
        assert [d.device for d in await b.dm_deliveries(after.message_id)] == [
            alice.identity.device.public_key
        ]
        assert [d.device for d in await a1.dm_deliveries(mine.message_id)] == [
            bob.identity.device.public_key
        ]
        # The revoked device's own messages are refused by Bob (he knows the revocation).
        stolen = await a2.send_dm(bob.account, "sent by a thief")
        await wait_for(lambda: a2.waiting_reason(stolen.message_id) is not None)
        assert b._dms.stats["rejected"] >= 1
        assert not has_text(bob, "sent by a thief")
        assert (await a2.history(bob.account))[-1].message_id == stolen.message_id
        assert texts(alice2) == ["hello alice", "hi bob, from my laptop"]


async def _active_groups(node: Node) -> set[bytes]:
    return {g.group_id for g in await node.groups() if g.status is GroupStatus.ACTIVE}


def _shown(node: Node, group: bytes, text: str) -> bool:
    return any(m.content is not None and m.text == text for m in node.group_history(group))


async def test_a_revoked_device_can_neither_post_nor_read_what_follows_in_a_group(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with hub() as h, running(h, alice, tmp_path) as a1, running(h, bob, tmp_path) as b:
        secret = await a1.create_group("Secret", kind="private")
        await b.join_group(await a1.invite(secret))
        async with linked(h, alice, "desktop", tmp_path) as alice2:
            a2 = alice2.node
            assert a2 is not None
            with trio.fail_after(120):  # mock time: the synced group is joined with retries
                while secret not in await _active_groups(a2):  # noqa: ASYNC110 - polls the store
                    await trio.sleep(0.1)
            bob_device = bob.identity.device.public_key
            await wait_for(lambda: bob_device in a2._g.engine(secret).member_devices())
            await a2.post(secret, "from the desktop, before")
            await wait_for(lambda: _shown(b, secret, "from the desktop, before"))
            await b.post(secret, "bob, before")
            await wait_for(lambda: _shown(a2, secret, "bob, before"))

            # The revocation keeps what the revoking device holds of the revoked one.
            await wait_for(lambda: _shown(a1, secret, "from the desktop, before"))
            epoch = b._g.engine(secret).state.epoch
            await a1.revoke_device(alice2.identity.device.public_key)
            # The revocation is in the group's log: every member moves to a new epoch.
            await wait_for(lambda: b._g.engine(secret).state.epoch == epoch + 1)
            await wait_for(lambda: a2._g.engine(secret).state.epoch == epoch + 1)
            revoked = (alice.account, alice2.identity.device.public_key)
            assert b._g.engine(secret).is_revoked(*revoked)
            assert alice2.identity.device.public_key not in b._g.engine(secret).member_devices()

            # What follows is sealed under keys the revoked device never gets.
            await b.post(secret, "bob, after")
            await wait_for(lambda: _shown(a1, secret, "bob, after"))
            bob_after = next(m for m in a1.group_history(secret) if m.text == "bob, after")
            await wait_for(lambda: a2._g.engine(secret).log.get(bob_after.ref.event_id) is not None)
            assert not _shown(a2, secret, "bob, after")
            # Its own device refuses to write; a forged later event would be void anyway
            # (protocol-spec/vectors/groups: device-revocation).
            with pytest.raises(PermissionDeniedError):
                await a2.post(secret, "from the desktop, after")
            # Before the revocation stays as it was.
            assert _shown(b, secret, "from the desktop, before")
            assert _shown(a1, secret, "from the desktop, before")


async def test_reads_and_receipts_follow_to_our_other_devices(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a1,
        running(h, bob, tmp_path) as b,
        linked(h, alice, "desktop", tmp_path) as alice2,
    ):
        a2 = alice2.node
        assert a2 is not None
        sent = await a1.send_dm(bob.account, "hi bob")
        await wait_for(lambda: has_text(bob, "hi bob") and has_text(alice2, "hi bob"))

        async def copy_state() -> DeliveryState:
            return (await a2.message(sent.message_id)).state

        with trio.fail_after(60):
            while await copy_state() is not DeliveryState.DELIVERED:  # noqa: ASYNC110
                await trio.sleep(0.05)

        await b.send_dm(alice.account, "one")
        await b.send_dm(alice.account, "two")
        await wait_for(lambda: has_text(alice, "two") and has_text(alice2, "two"))

        async def unread(node: Node) -> int:
            conversation = next(c for c in await node.conversations() if c.peer_account)
            return conversation.unread

        assert await unread(a2) == 2
        await a1.mark_read("dm:" + bob.account.hex())
        assert await unread(a1) == 0
        with trio.fail_after(60):
            while await unread(a2) != 0:  # noqa: ASYNC110 - polls the store
                await trio.sleep(0.05)
