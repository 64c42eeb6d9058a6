"""The memory network's simulator faults: duplicated and reordered gossip, and no
delivery to a node that has gone (its validator must never run again)."""

from __future__ import annotations

import random

import pytest
import trio

from p2pchat.errors import PeerUnreachableError
from p2pchat.net.memory import LinkFaults, MemoryHub, open_memory_hub

TOPIC = "/p2pchat/group/test"


async def _two_subscribed(hub: MemoryHub, nursery: trio.Nursery) -> list[list[bytes]]:
    """Nodes a (publisher) and b (subscriber, recording in its validator) connected."""
    seen: list[list[bytes]] = [[]]
    a_ready, b_ready = trio.Event(), trio.Event()

    async def node(name: str, ready: trio.Event) -> None:
        async with hub.open_node(name) as net:
            if name == "b":

                def validate(origin: str, data: bytes) -> bool:
                    seen[0].append(data)
                    return True

                net.pubsub.set_validator(TOPIC, validate)
                await net.pubsub.subscribe(TOPIC)
            ready.set()
            await trio.sleep_forever()

    nursery.start_soon(node, "a", a_ready)
    nursery.start_soon(node, "b", b_ready)
    await a_ready.wait()
    await b_ready.wait()
    hub.connect("a", "b")
    return seen


def test_link_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        LinkFaults(duplicate=1.5)
    with pytest.raises(ValueError, match="jitter"):
        LinkFaults(jitter=-1)


async def test_duplicated_gossip_arrives_twice(autojump_clock: object) -> None:
    async with open_memory_hub(rng=random.Random(3)) as hub, trio.open_nursery() as nursery:
        seen = await _two_subscribed(hub, nursery)
        hub.set_default_faults(LinkFaults(duplicate=1.0))
        publisher = hub.node("a")
        assert publisher is not None
        await publisher.pubsub.publish(TOPIC, b"m")
        assert seen[0] == [b"m", b"m"]
        assert hub.statistics().gossip_duplicated == 1
        nursery.cancel_scope.cancel()


async def test_jitter_reorders_gossip(autojump_clock: object) -> None:
    async with open_memory_hub(rng=random.Random(5)) as hub, trio.open_nursery() as nursery:
        seen = await _two_subscribed(hub, nursery)
        hub.set_default_faults(LinkFaults(latency=0.01, jitter=1.0))
        publisher = hub.node("a")
        assert publisher is not None
        sent = [bytes([i]) for i in range(20)]
        for data in sent:
            await publisher.pubsub.publish(TOPIC, data)
        await trio.sleep(2)
        assert sorted(seen[0]) == sent  # all arrive ...
        assert seen[0] != sent  # ... in another order
        nursery.cancel_scope.cancel()


async def test_no_late_delivery_to_a_node_that_is_gone(autojump_clock: object) -> None:
    async with open_memory_hub(rng=random.Random(7)) as hub, trio.open_nursery() as nursery:
        seen = await _two_subscribed(hub, nursery)
        hub.set_default_faults(LinkFaults(latency=1.0))
        publisher, subscriber = hub.node("a"), hub.node("b")
        assert publisher is not None
        assert subscriber is not None
        await publisher.pubsub.publish(TOPIC, b"late")
        subscriber.shut()  # b goes away while the delivery is in flight
        await trio.sleep(2)
        assert seen[0] == []
        nursery.cancel_scope.cancel()


async def test_a_connection_dropped_while_a_stream_opens_is_a_network_error(
    autojump_clock: object,
) -> None:
    async with open_memory_hub(rng=random.Random(9)) as hub, trio.open_nursery() as nursery:
        await _two_subscribed(hub, nursery)
        opener = hub.node("a")
        assert opener is not None
        opener.learn("b")
        hub.set_default_faults(LinkFaults(latency=1.0))

        async def partition_soon() -> None:
            await trio.sleep(0.5)
            hub.partition(["a"], ["b"])

        nursery.start_soon(partition_soon)
        with pytest.raises(PeerUnreachableError):
            await opener.open_stream("b", "/p2pchat/test/1")
        nursery.cancel_scope.cancel()
