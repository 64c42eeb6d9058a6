"""Groups on real py-libp2p hosts (127.0.0.1): six nodes, invites, DHT search by tag,
delivery to every member, a private-group removal, and a late joiner catching up a
10,000-event history through sync streams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import nacl.utils
import pytest
import trio

from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.events import Event, GroupChanged, GroupMessage
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.config import NetConfig
from p2pchat.node import Node
from p2pchat.protocol.content import Content
from p2pchat.protocol.group_events import Post, Sealed, decode_event
from p2pchat.storage.records import StoredGroupEvent
from p2pchat_crypto.errors import CryptoError

pytestmark = pytest.mark.integration

FAST = DeliveryConfig(retry_initial_ms=200, retry_max_ms=1_000, ack_timeout_ms=3_000)
NAMES = "abcdef"


def identity() -> UnlockedIdentity:
    return UnlockedIdentity.generate(rng=nacl.utils.random, now=time.time_ns() // 1_000_000)


def config(home: Path, bootstrap: tuple[str, ...] = ()) -> NodeConfig:
    # Groups over libp2p, not NAT traversal (tested on its own): NAT services off.
    net = NetConfig(
        listen_hosts=("127.0.0.1",),
        port=0,
        bootstrap=bootstrap,
        autonat=False,
        relay_hop=False,
        relay_client=False,
    )
    return NodeConfig(home=home, net=net, delivery=FAST, rpc=False)


def address(node: Node) -> str:
    return f"{node.listen_addrs[0]}/p2p/{node.peer_id}"


class Recorder:
    """Collects a node's events and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = trio.Event()

    async def run(self, node: Node) -> None:
        async with node.events() as stream:
            async for event in stream:
                self.events.append(event)
                self._changed.set()
                self._changed = trio.Event()

    async def wait(self, predicate: Callable[[list[Event]], bool]) -> None:
        while not predicate(self.events):
            await self._changed.wait()

    async def wait_texts(self, group_id: bytes, *texts: str) -> None:
        await self.wait(lambda _: set(texts) <= set(self.texts(group_id)))

    def texts(self, group_id: bytes) -> list[str]:
        return [
            e.text for e in self.events if isinstance(e, GroupMessage) and e.group_id == group_id
        ]


async def eventually(predicate: Callable[[], bool], *, interval: float = 0.05) -> None:
    """Poll node state (not events) until it holds; the caller bounds it with fail_after."""
    while not predicate():  # noqa: ASYNC110 - a condition on node state, not a fixed sleep
        await trio.sleep(interval)


@asynccontextmanager
async def started(node: Node) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    async with node, trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run, node)
        yield recorder
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def cluster(tmp: Path, count: int) -> AsyncIterator[list[tuple[Node, Recorder]]]:
    """``count`` nodes bootstrapped from the first one, all DHT servers."""
    async with AsyncExitStack() as stack:
        first = Node(config(tmp / "n0"), identity())
        nodes = [(first, await stack.enter_async_context(started(first)))]
        boot = (address(first),)
        for i in range(1, count):
            node = Node(config(tmp / f"n{i}", boot), identity())
            nodes.append((node, await stack.enter_async_context(started(node))))
        for node, _ in nodes:
            await node.wait_published()
        yield nodes


async def test_six_nodes_public_search_private_removal(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with cluster(tmp_path, 6) as nodes:
            (a, ra), *others = nodes
            members = [n for n, _ in nodes]

            # A public group found by tag through DHT rendezvous records, joined by id.
            public = await a.create_group("Vinyl collectors", tags=("vinyl",))
            for node, _ in others[:2]:
                await node.join_group(await a.invite(public))
            for node, _ in others[2:]:
                found = await node.search_groups("vinyl")
                assert [r["group_id"] for r in found] == [public.hex()]
                assert await node.join_group(found[0]["group_id"]) == public
            await eventually(lambda: all(len(n.group_state(public).members) == 6 for n in members))

            posts = [f"hello from {name}" for name in NAMES]
            for node, text in zip(members, posts, strict=True):
                await node.post(public, text)
            for _, recorder in nodes:
                await recorder.wait_texts(public, *posts)
            await eventually(
                lambda: len({n._groups.engine(public).history_hash() for n in members}) == 1
            )

            # A private group with five members joined through invite links.
            private = await a.create_group("Book club", kind="private")
            (b, rb), (c, rc), (d, rd), (e, re) = others[:4]
            for node in (b, c, d, e):
                await node.join_group(await a.invite(private))
            await eventually(
                lambda: all(len(n.group_state(private).members) == 5 for n in (a, b, c, d, e))
            )
            await a.post(private, "secret plans")
            for recorder in (rb, rc, rd, re):
                await recorder.wait_texts(private, "secret plans")

            # E is removed: it sees its removal, the others start a new epoch without it.
            await a.remove(private, e.account_key, reason="spoilers")
            await re.wait(
                lambda evs: any(
                    isinstance(x, GroupChanged)
                    and x.change == "left"
                    and x.account == e.account_key
                    for x in evs
                )
            )
            later = await a.post(private, "after e left")
            for recorder in (rb, rc, rd):
                await recorder.wait_texts(private, "after e left")
            agrees = await c.post(private, "c agrees")
            for recorder in (ra, rb, rd):
                await recorder.wait_texts(private, "c agrees")
            # E's node stopped taking part; even holding the ciphertexts (say a member
            # leaks them), E's keys for the group open neither: new epoch, new keys.
            e_keys = e._groups._keyrings[private]
            for event_id in (later, agrees):
                (data,) = (await a._groups._store.group_event_data(private, [event_id])).values()
                sealed = decode_event(data)
                assert isinstance(sealed.parsed, Sealed)
                with pytest.raises(CryptoError):
                    e_keys.decrypt(sealed.parsed.ciphertext)
            assert "secret plans" in re.texts(private)  # read before the removal
            unreadable = {"after e left", "c agrees"}
            assert not unreadable & set(re.texts(private))
            e_view = e._groups.engine(private).view
            assert not unreadable & {m.content.text for m in e_view.messages if m.content}


def bulk_author(node: Node, group_id: bytes, count: int) -> list[StoredGroupEvent]:
    """Author ``count`` posts straight on the creator's engine (no gossip, one store write
    later): the fast way to give a group a long history."""
    groups = node._groups
    engine = groups.engine(group_id)
    device = groups._device
    now = time.time_ns() // 1_000_000
    rows = []
    for i in range(count):
        body = Post(content=Content(type="p2pchat/text", body={}, text=f"archive {i}"))
        data = engine.author(body, device=device, now=now)
        stored = engine.log.get(decode_event(data).event_id)
        assert stored is not None
        rows.append(
            StoredGroupEvent(
                event_id=stored.event_id,
                device=stored.event.author_device,
                seq=stored.event.seq,
                lamport=stored.event.lamport,
                data=data,
                received_at=now,
            )
        )
    return rows


async def test_late_joiner_catches_up_ten_thousand_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(60):
        async with cluster(tmp_path, 3) as nodes:
            (a, _), (b, _), (late, _) = nodes
            group = await a.create_group("Archive")
            await b.join_group(await a.invite(group))
            start = time.perf_counter()
            rows = bulk_author(a, group, 10_000)
            await a._groups._store.add_group_events(group, rows)
            a._groups.engine(group).mark_stored(r.event_id for r in rows)  # as a node does
            authored = time.perf_counter() - start
            link = await a.invite(group)
            total = a._groups.engine(group).statistics()["events"]
            assert total == 10_004  # genesis, two invites, B's join and the posts

            start = time.perf_counter()
            await late.join_group(link)
            engine = late._groups.engine(group)
            await eventually(lambda: engine.statistics()["events"] >= total)
            elapsed = time.perf_counter() - start
            assert [m.content.text for m in late.group_history(group, limit=2) if m.content] == [
                "archive 9998",
                "archive 9999",
            ]
            # The joiner's own join event follows the history; the creator gets it too.
            await eventually(lambda: late.account_key in a.group_state(group).members)
            await eventually(
                lambda: a._groups.engine(group).history_hash() == engine.history_hash()
            )
            assert len(await late._groups._store.group_events(group)) == total + 1
        with capsys.disabled():
            print(
                f"\nlate joiner: authored 10,000 events in {authored:.2f} s; caught up "
                f"{total} events in {elapsed:.2f} s ({total / elapsed:,.0f} events/s)"
            )
