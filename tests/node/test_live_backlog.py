"""A late joiner of a watch party fetches the live comments of the range it plays
(``/p2pchat/live/1.0.0`` between real nodes on the in-memory network, MockClock), and
the serving and fetching halves against a hostile peer (a scripted stream)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
from nacl.signing import SigningKey

from p2pchat.api.methods import build_registry
from p2pchat.errors import ConfigError, NetworkError, WireError
from p2pchat.events import GroupLiveComment
from p2pchat.groups.live import LIVE_PROTOCOL, LiveBacklog
from p2pchat.identity.peerid import peer_id_from_ed25519
from p2pchat.net.base import FramedStream
from p2pchat.net.memory import memory_addr
from p2pchat.protocol.content import MediaRef
from p2pchat.protocol.envelope import decode_envelope, seal
from p2pchat.protocol.group_effects import ReceiveResult
from p2pchat.protocol.group_engine import EngineConfig, GroupEngine
from p2pchat.protocol.group_events import LiveComment, MemberAdd, decode_event
from p2pchat.protocol.group_live import LiveConfig
from p2pchat.protocol.limits import PeerLimiter
from p2pchat.protocol.live_messages import LiveBatch, LiveWant
from p2pchat_crypto import cbor
from tests.conftest import NOW_MS
from tests.node.harness import Peer, hub, new_peer, running, wait_for
from tests.protocol.test_group_kit import account, device, new_group, post, replica

MOVIE = MediaRef(hash=bytes(range(32)), mime="video/mp4", size=10**9)


def live_events(peer: Peer, group: bytes) -> list[GroupLiveComment]:
    return [e for e in peer.events if isinstance(e, GroupLiveComment) and e.group_id == group]


async def test_a_late_joiner_fetches_the_comments_of_the_range_it_plays(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob, carol, dave = (new_peer(n) for n in ("alice", "bob", "carol", "dave"))
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a,
        running(h, bob, tmp_path) as b,
        running(h, carol, tmp_path) as c,
        h.open_node(dave.peer_id) as dave_net,
    ):
        group = await a.create_group("Movie night", kind="live", tags=("movies",))
        await b.join_group(group.hex())
        await wait_for(lambda: bob.account in a.group_state(group).members)
        for second in range(1, 61):  # one comment a second, as the film plays
            author = a if second % 2 else b
            await author.live_comment(group, MOVIE, second * 1_000, f"at {second}s")
            await trio.sleep(1)
        await wait_for(lambda: len(a.live_comments(group, MOVIE.hash, 0, 61_000)) == 60)
        await wait_for(lambda: len(b.live_comments(group, MOVIE.hash, 0, 61_000)) == 60)

        await c.join_group(group.hex())
        await wait_for(lambda: carol.account in a.group_state(group).members)
        assert c.live_comments(group, MOVIE.hash, 0, 30_000) == []  # gossip only: nothing yet
        assert await c.fetch_live_comments(group, MOVIE.hash, 0, 30_000) == 29
        got = c.live_comments(group, MOVIE.hash, 0, 61_000)
        assert [e.offset for e in got] == [s * 1_000 for s in range(1, 30)]  # by offset
        assert [e.text for e in got] == [f"at {s}s" for s in range(1, 30)]
        assert {e.account for e in got} == {alice.account, bob.account}
        await wait_for(lambda: len(live_events(carol, group)) == 29)  # each one announced
        assert sorted(e.offset for e in live_events(carol, group)) == [e.offset for e in got]
        assert await c.fetch_live_comments(group, MOVIE.hash, 0, 30_000) == 0  # all known
        assert await c.fetch_live_comments(group, MOVIE.hash, 30_000, 31_000) == 1
        assert await c.fetch_live_comments(group, bytes(32), 0, 61_000) == 0  # other media

        fetch = build_registry(c).get("groups.live_fetch")  # the same call over RPC
        assert fetch is not None
        assert fetch.scope == "send"
        span = {"group": group.hex(), "media_hash": MOVIE.hash.hex()}
        answer = await fetch.handler(
            fetch.schema.validate({**span, "start_ms": 31_000, "end_ms": 33_000})
        )
        assert answer == {"group_id": group.hex(), "received": 2}
        with pytest.raises(ConfigError):
            await fetch.handler(fetch.schema.validate({**span, "start_ms": 5, "end_ms": 5}))

        # dave is in no group: alice refuses his want, he reads nothing
        await dave_net.connect(alice.peer_id, [memory_addr(alice.peer_id)])
        stream = await dave_net.open_stream(alice.peer_id, LIVE_PROTOCOL)
        want = LiveWant(group=group, media=MOVIE.hash, start=0, end=61_000, max=512)
        key = SigningKey(dave.identity.device.signing_seed())
        await stream.write_frame(seal(want, signing_key=key, now=NOW_MS))
        assert await read_or_reset(stream) is None
        assert a._groups.transport.live.stats["refused"] == 1


async def read_or_reset(stream: FramedStream) -> bytes | None:
    """The next frame, or None if the stream ended or was reset."""
    try:
        return await stream.read_frame(1 << 20)
    except NetworkError:
        return None


class ScriptedStream:
    """A FramedStream whose peer is a script: frames it sends, frames we wrote."""

    def __init__(self, peer: str, incoming: Sequence[bytes]) -> None:
        self.remote_peer = peer
        self.protocol = LIVE_PROTOCOL
        self.incoming = deque(incoming)
        self.written: list[bytes] = []
        self.closed = self.was_reset = False

    async def read_frame(self, max_size: int) -> bytes | None:
        await trio.lowlevel.checkpoint()
        return self.incoming.popleft() if self.incoming else None

    async def write_frame(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.written.append(data)

    async def write_frames(self, frames: Sequence[bytes]) -> None:
        for data in frames:
            await self.write_frame(data)

    async def close(self) -> None:
        self.closed = True

    async def reset(self) -> None:
        self.was_reset = True


def _live_group(window_ms: int = 60_000) -> tuple[GroupEngine, GroupEngine]:
    """An owner's engine and a member's replica (with a short window)."""
    owner, genesis = new_group("live", join="open")
    owner.author(
        MemberAdd(account=account("ann"), role="member"), device=device("owner"), now=NOW_MS
    )
    member = replica(
        genesis,
        [s.data for s in owner.ordered_events()],
        config=EngineConfig(live=LiveConfig(window_ms=window_ms)),
    )
    return owner, member


def _backlog(engine: GroupEngine, now: list[int], results: list[ReceiveResult]) -> LiveBacklog:
    async def on_result(group: bytes, result: ReceiveResult) -> None:
        results.append(result)

    return LiveBacklog(
        signing_key=SigningKey(bytes(32)),
        clock=lambda: now[0],
        engine_of={engine.group_id: engine}.get,
        limiter=PeerLimiter(rate=10, burst=100),
        on_result=on_result,
        live=LiveConfig(),
    )


def _comment(engine: GroupEngine, offset: int, ts: int) -> bytes:
    body = LiveComment(media=MOVIE, offset=offset, text=f"at {offset}")
    return engine.author_live(body, device=device("owner"), now=ts)


async def test_the_server_serves_members_only_and_only_what_is_in_its_window() -> None:
    owner, member = _live_group(window_ms=60_000)
    old, new = _comment(owner, 1_000, NOW_MS), _comment(owner, 2_000, NOW_MS + 40_000)
    for data in (old, new):
        member.receive(data, now=NOW_MS + 40_000)
    now = [NOW_MS + 70_000]  # `old` left the window 10 s ago
    server = _backlog(member, now, [])
    want = LiveWant(group=member.group_id, media=MOVIE.hash, start=0, end=10_000, max=512)
    asker = device("owner")  # a member whose device the log knows
    frame = seal(want, signing_key=SigningKey(asker.signing_seed()), now=now[0])
    stream = ScriptedStream(peer_id_from_ed25519(asker.public_key), [frame])
    await server.serve(stream)
    assert stream.closed
    assert not stream.was_reset
    (answer,) = stream.written
    batch = decode_envelope(answer).open()
    assert batch == LiveBatch(group=member.group_id, events=(new,), more=False)

    stranger = device("zed")  # a valid signature, but not a member's device
    frame = seal(want, signing_key=SigningKey(stranger.signing_seed()), now=now[0])
    refused = ScriptedStream(peer_id_from_ed25519(stranger.public_key), [frame])
    await server.serve(refused)
    assert refused.was_reset
    assert refused.written == []
    # a member's want relayed by another peer is refused too (the sender must be the peer)
    relayed = ScriptedStream(peer_id_from_ed25519(stranger.public_key), [stream_frame(want)])
    await server.serve(relayed)
    assert relayed.was_reset
    assert relayed.written == []


def stream_frame(want: LiveWant) -> bytes:
    return seal(want, signing_key=SigningKey(device("owner").signing_seed()), now=NOW_MS)


async def test_forged_and_foreign_entries_of_a_batch_are_dropped_and_the_rest_kept() -> None:
    owner, member = _live_group(window_ms=10**9)
    chain_before = len(member.ordered_events())
    good = [_comment(owner, off * 1_000, NOW_MS + off * 1_000) for off in range(1, 6)]
    raw = dict(decode_event(_comment(owner, 2_500, NOW_MS + 2_500)).raw)
    raw["b"] = {**raw["b"], "text": "forged"}
    forged = cbor.encode(raw)
    chain_event = owner.author(post("a post, not a comment"), device=device("owner"), now=NOW_MS)
    batch = LiveBatch(
        group=member.group_id,
        events=(good[0], forged, good[1], chain_event, b"\x00", *good[2:]),
        more=False,
    )
    server_key = SigningKey(device("owner").signing_seed())
    answer = seal(batch, signing_key=server_key, now=NOW_MS)
    results: list[ReceiveResult] = []
    client = _backlog(member, [NOW_MS + 10_000], results)
    stream = ScriptedStream("server", [answer])
    want = LiveWant(group=member.group_id, media=MOVIE.hash, start=0, end=60_000, max=512)
    assert await client.fetch(stream, want) == 5
    assert stream.closed
    offsets = [e.offset for e in member.live_comments(MOVIE.hash, 0, 10**6, now=NOW_MS + 10_000)]
    assert offsets == [1_000, 2_000, 3_000, 4_000, 5_000]
    assert all(e.text != "forged" for e in member.live_comments(MOVIE.hash, 0, 10**6, now=NOW_MS))
    assert sum(len(r.effects) for r in results) == 5
    assert all(r.accepted == () for r in results)
    assert client.stats["dropped"] == 3
    assert len(member.ordered_events()) == chain_before  # the post was not applied
    (sent,) = stream.written
    assert decode_envelope(sent).open() == want

    wrong = seal(LiveWant(group=member.group_id, media=MOVIE.hash, start=0, end=1, max=1),
                 signing_key=server_key, now=NOW_MS)  # fmt: skip
    with pytest.raises(WireError):  # a server answering with anything but a batch
        await client.fetch(ScriptedStream("server", [wrong]), want)


async def test_a_member_failing_mid_fetch_keeps_what_its_earlier_pages_brought() -> None:
    owner, member = _live_group(window_ms=10**9)
    first = [_comment(owner, off * 1_000, NOW_MS + off * 1_000) for off in (1, 2, 3)]
    page = LiveBatch(group=member.group_id, events=tuple(first), more=True)
    answer = seal(page, signing_key=SigningKey(bytes(32)), now=NOW_MS)
    client = _backlog(member, [NOW_MS + 10_000], [])
    want = LiveWant(group=member.group_id, media=MOVIE.hash, start=0, end=60_000, max=3)
    screen = client.screen(want)
    stream = ScriptedStream("server", [answer])  # then ends instead of the second page
    with pytest.raises(WireError):
        await client.fetch(stream, want, screen=screen)
    assert screen.added == 3
    second_want = decode_envelope(stream.written[1]).open()
    assert isinstance(second_want, LiveWant)
    assert second_want.start == 3_000  # asked again from the last offset it got
    assert len(member.live_comments(MOVIE.hash, 0, 10**6, now=NOW_MS + 10_000)) == 3
