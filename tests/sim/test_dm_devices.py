"""Issue 18 in the simulator: accounts of 1-3 devices exchange direct messages over lossy
links; every message reaches every current device of its recipient and every other
device of its sender exactly once (the app is told once), never its sending device; a
device revoked midway gets none of what is sent once the others know (a minute at most:
senders look an account's list up again when it is a minute old)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from p2pchat.devices.roster import save_list
from p2pchat.net.memory import LinkFaults, open_memory_hub
from p2pchat.protocol.records import DeviceEntry, DeviceListRecord

from .world import SimPeer, World

#: Devices per account: three accounts of 3, 2 and 1 devices.
SHAPE = (3, 2, 1)
MESSAGES = 16


async def _accounts() -> list[list[SimPeer]]:
    accounts = []
    for index, size in enumerate(SHAPE):
        first = SimPeer.named(f"a{index}d0")
        devices = [first] + [SimPeer.linked(f"a{index}d{d}", first) for d in range(1, size)]
        if size > 1:
            entries = tuple(
                DeviceEntry(
                    device=p.identity.device.public_key, cert=p.identity.device.certificate.encode()
                )
                for p in devices
            )
            for peer in devices:
                await save_list(peer.store, DeviceListRecord(devices=entries))
        accounts.append(devices)
    return accounts


@pytest.mark.parametrize("seed", [1, 2])
async def test_every_device_gets_each_dm_exactly_once_and_a_revoked_one_nothing_new(
    seed: int, tmp_path: Path, autojump_clock: object
) -> None:
    accounts = await _accounts()
    rng = random.Random(f"dm-devices-{seed}")
    sent: list[tuple[bytes, SimPeer, int, bool]] = []  # id, sender, to account, after
    revoked = accounts[0][2]
    async with open_memory_hub(rng=random.Random(f"hub-{seed}")) as hub:
        hub.set_default_faults(LinkFaults(loss=0.1, latency=0.02, jitter=0.02))
        async with trio.open_nursery() as nursery:
            world = World(hub=hub, nursery=nursery, home=tmp_path, seed=seed)
            for devices in accounts:
                for peer in devices:
                    await world.start(peer)
            for i in range(MESSAGES):
                after = i >= MESSAGES // 2
                if i == MESSAGES // 2:
                    first = accounts[0][0].node
                    assert first is not None
                    await first.revoke_device(revoked.identity.device.public_key)
                    await trio.sleep(61)  # every node looks the lists up again meanwhile
                frm = rng.randrange(len(accounts))
                to = rng.choice([a for a in range(len(accounts)) if a != frm])
                senders = [p for p in accounts[frm] if not (after and p is revoked)]
                sender = rng.choice(senders)
                assert sender.node is not None
                message = await sender.node.send_dm(accounts[to][0].account, f"m{i}")
                sent.append((message.message_id, sender, to, after))
                await trio.sleep(rng.uniform(0.1, 3.0))

            def targets(sender: SimPeer, to: int, after: bool) -> list[SimPeer]:
                own = [p for p in accounts_of(sender) if p is not sender]
                found = accounts[to] + own
                return [p for p in found if not (after and p is revoked)]

            def accounts_of(peer: SimPeer) -> list[SimPeer]:
                return next(a for a in accounts if peer in a)

            def done() -> bool:
                return all(
                    target.dms[message_id] >= 1
                    for message_id, sender, to, after in sent
                    for target in targets(sender, to, after)
                )

            hub.heal()
            with trio.fail_after(600):
                while not done():  # noqa: ASYNC110 - a condition on the nodes' state
                    await trio.sleep(1)
            # Nothing left to retry anywhere (a retry would show as a duplicate).
            everyone = [p for a in accounts for p in a if p is not revoked]
            with trio.fail_after(600):
                while any([await p.store.due_outbox(2**62, limit=1) for p in everyone]):  # noqa: ASYNC110
                    await trio.sleep(1)
            for message_id, sender, to, after in sent:
                for target in targets(sender, to, after):
                    assert target.dms[message_id] == 1, (target.name, message_id.hex())
                assert sender.dms[message_id] == 0
                if after:
                    assert revoked.dms[message_id] == 0, message_id.hex()
                    assert revoked.node is not None
                    assert await revoked.store.get_message(message_id) is None
            nursery.cancel_scope.cancel()
