"""Issue 18: link a second device to an account, list and revoke it, on the memory network
(real nodes, real link streams, the DHT's device list as others see it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from nacl.signing import SigningKey

from p2pchat.devices import Joined, join_account, linked_identity, save_granted
from p2pchat.errors import PermissionDeniedError
from p2pchat.events import DeviceLinked, DeviceLinkRequest, DeviceRevoked
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.memory import MemoryHub
from p2pchat.node import Node
from p2pchat.storage.memory import MemoryStore
from p2pchat.storage.records import GroupStatus
from tests.conftest import DeterministicRng
from tests.node.harness import Peer, hub, mock_clock_ms, new_peer, running, wait_for


async def _join(
    h: MemoryHub, code: str, seed: bytes, shown: list[str], *, name: str = "desktop"
) -> Joined:
    """The new device: a bare network under its own device key, then the link."""
    key = bytes(SigningKey(seed).verify_key)
    async with h.open_node(peer_id_from_ed25519(key)) as net:
        return await join_account(
            net,
            code,
            device_key=key,
            name=name,
            clock=mock_clock_ms,
            rng=DeterministicRng(f"join-{name}"),
            show_confirm=shown.append,
        )


async def _answer(peer: Peer, shown: list[str], accept: bool) -> None:
    """The existing device's user: wait for the request, compare the codes, answer."""
    node = peer.node
    assert node is not None
    await wait_for(lambda: node.pending_link() is not None and bool(shown))
    request = next(e for e in peer.events if isinstance(e, DeviceLinkRequest))
    assert request.confirm == shown[0]  # both sides show the same code
    node.confirm_link(accept)


async def _active_groups(node: Node) -> list[bytes]:
    return [g.group_id for g in await node.groups() if g.status is GroupStatus.ACTIVE]


def _account_devices(node: Node, account: bytes) -> object:
    return node._directory.devices_of(account)  # type: ignore[union-attr]  # what peers see


async def test_link_a_second_device_then_revoke_it(tmp_path: Path, autojump_clock: object) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    seed = DeterministicRng("alice-desktop")(32)
    async with hub() as h, running(h, alice, tmp_path) as a1, running(h, bob, tmp_path) as b:
        await a1.add_contact(bob.account.hex(), name="Bob")
        club = await a1.create_group("Club", kind="public")
        secret = await a1.create_group("Secret", kind="private")
        await b.join_group(await a1.invite(secret))
        await b.join_group(club.hex())
        invite = a1.link_device()
        assert invite.code.startswith("p2pchat-link:")
        shown: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, alice, shown, True)
            joined = await _join(h, invite.code, seed, shown)
        assert joined.result.account.account_key == alice.account
        assert joined.sync is not None
        await wait_for(lambda: any(isinstance(e, DeviceLinked) for e in alice.events))

        # The new device runs under the account, its own device key, the granted list.
        second = Peer(
            name="alice2",
            identity=linked_identity(joined, device_seed=seed, rng=DeterministicRng("a2")),
            store=MemoryStore(),
        )
        await save_granted(second.store, joined, names={}, now=mock_clock_ms())
        new_key = second.identity.device.public_key
        async with running(h, second, tmp_path) as a2:
            assert a2.account_key == a1.account_key
            assert a2.device_key != a1.device_key
            assert {d.device for d in a1.devices()} == {a1.device_key, new_key}
            assert {d.device for d in a2.devices()} == {a1.device_key, new_key}
            assert next(d for d in a1.devices() if d.device == new_key).name == "desktop"
            certs = await _account_devices(b, alice.account)  # type: ignore[misc]
            assert {c.device_key for c in certs} == {a1.device_key, new_key}

            # Contacts and groups came along; the new device posts as the account.
            assert [(c.account, c.display_name) for c in await a2.contacts()] == [
                (bob.account, "Bob")
            ]
            with trio.fail_after(120):  # mock time: joining retries with backoff
                while set(await _active_groups(a2)) != {club, secret}:  # noqa: ASYNC110 - polls the store
                    await trio.sleep(0.1)
            await a2.post(club, "from my desktop")
            await a2.post(secret, "sealed, from my desktop")

            def posted(node: Node, group: bytes, text: str) -> bool:
                return any(
                    m.content is not None and m.content.text == text
                    for m in node.group_history(group)
                )

            await wait_for(lambda: posted(b, club, "from my desktop"))
            await wait_for(lambda: posted(b, secret, "sealed, from my desktop"))
            # Not yet: the new device reading what *others* seal before their next sender-key
            # distribution (issue 18 "sender keys reach every device", notes/issue18).

            # Revoke the second device from the first: peers stop seeing it, and it learns.
            info = await a1.revoke_device(new_key)
            assert info.state == "revoked"
            certs = await _account_devices(b, alice.account)  # type: ignore[misc]
            assert [c.device_key for c in certs] == [a1.device_key]
            await a2.refresh_devices()
            await wait_for(
                lambda: any(isinstance(e, DeviceRevoked) and e.this_device for e in second.events)
            )
            with pytest.raises(PermissionDeniedError):
                a2.link_device()
            # The revocation is sticky: the revoked device's own list cannot bring it back.
            await a1.refresh_devices()
            assert [d.state for d in a1.devices() if d.device == new_key] == ["revoked"]
            with pytest.raises(PermissionDeniedError):
                await a1.revoke_device(a1.device_key)


async def test_refused_and_spent_codes(tmp_path: Path, autojump_clock: object) -> None:
    alice = new_peer("alice")
    async with hub() as h, running(h, alice, tmp_path) as a1:
        invite = a1.link_device()
        shown: list[str] = []
        refusals: list[str] = []

        async def join_refused() -> None:
            try:
                await _join(h, invite.code, DeterministicRng("x")(32), shown)
            except PermissionDeniedError as exc:
                refusals.append(str(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, alice, shown, False)
            nursery.start_soon(join_refused)
        assert len(refusals) == 1
        assert "refused" in refusals[0]
        await wait_for(lambda: any(isinstance(e, DeviceLinked) and e.refused for e in alice.events))
        assert [d.device for d in a1.devices()] == [a1.device_key]  # nothing linked
        # A refused code is spent; an old code no longer works once a new one is made.
        with pytest.raises(PermissionDeniedError, match=r"expired|already used"):
            await _join(h, invite.code, DeterministicRng("y")(32), [])
        a1.link_device()
        with pytest.raises(PermissionDeniedError):
            await _join(h, invite.code, DeterministicRng("z")(32), [])
