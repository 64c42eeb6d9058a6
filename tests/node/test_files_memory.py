"""Attachments between real nodes on the in-memory network: a DM with a file, and a
download from three holders while one of them vanishes mid-transfer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from p2pchat.blobs.serve import BlobServer
from p2pchat.config import BlobConfig
from p2pchat.errors import NetworkError, NotFoundError
from p2pchat.events import FileProgress, MessageReceived
from p2pchat.net.base import FramedStream
from p2pchat.net.memory import memory_addr
from p2pchat.node import Node
from p2pchat.protocol.blob import BLOB_PROTOCOL, CHUNK_SIZE, BlobChunk, decode_blob_frame
from p2pchat.protocol.content import Content, attachments_of
from tests.node.harness import hub, new_peer, running, wait_for


def _file(tmp: Path, name: str, size: int) -> Path:
    path = tmp / name
    path.write_bytes(bytes((i * 31 + 7) % 256 for i in range(size)))
    return path


async def test_a_dm_attachment_is_fetched_from_the_sender_and_opens(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    photo = _file(tmp_path, "holiday.jpg", 2 * CHUNK_SIZE + 5)
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        await a.send_dm(bob.account, "a picture", attachments=[photo])
        await wait_for(lambda: any(isinstance(e, MessageReceived) for e in bob.events))
        received = next(e for e in bob.events if isinstance(e, MessageReceived))
        stored = await b._s.get_message(received.message_id)
        assert stored is not None
        content = Content.from_bytes(stored.body, max_size=1 << 16)
        (ref,) = attachments_of(content)
        assert (ref.name, ref.mime, ref.size) == ("holiday.jpg", "image/jpeg", photo.stat().st_size)
        assert ref.url == f"/p2p/{alice.peer_id}"
        # Small enough to be fetched at once (auto_fetch_bytes).
        await wait_for(
            lambda: any(
                isinstance(e, FileProgress) and e.state == "done" and e.direction == "down"
                for e in bob.events
            )
        )
        info = b.file_info(ref.hash.hex()[:12])
        assert info.complete
        assert info.reason == "received"
        out = await b.save_file(ref.hash, tmp_path / "out")
        assert out == tmp_path / "out"
        assert out.read_bytes() == photo.read_bytes()
        # Bob's copy is ciphertext: the plaintext appears nowhere in his blob store.
        for held in (tmp_path / "bob" / "blobs").iterdir():
            assert photo.read_bytes()[:4096] not in held.read_bytes()


class _VanishingHolder:
    """Serves through the real server, then resets its stream after ``chunks`` chunks."""

    def __init__(self, server: BlobServer, chunks: int) -> None:
        self._server = server
        self._left = chunks
        self.vanished = False

    async def handle(self, stream: FramedStream) -> None:
        outer = self

        class Cut:
            remote_peer = stream.remote_peer
            protocol = stream.protocol

            async def read_frame(self, max_size: int) -> bytes | None:
                return await stream.read_frame(max_size)

            async def write_frame(self, data: bytes) -> None:
                if isinstance(decode_blob_frame(data), BlobChunk):
                    if outer._left <= 0:
                        outer.vanished = True
                        await stream.reset()
                        raise ConnectionError("gone")
                    outer._left -= 1
                await stream.write_frame(data)

            async def write_frames(self, frames: Sequence[bytes]) -> None:
                for data in frames:
                    await self.write_frame(data)

            async def close(self) -> None:
                await stream.close()

            async def reset(self) -> None:
                await stream.reset()

        try:
            await self._server.handle(Cut())
        except ConnectionError:
            return


async def test_three_holders_share_a_download_and_one_vanishing_is_survived(
    tmp_path: Path, autojump_clock: object
) -> None:
    peers = [new_peer(n) for n in ("alice", "bob", "carol", "dave")]
    data = _file(tmp_path, "video.bin", 12 * CHUNK_SIZE + 77)
    async with (
        hub() as h,
        running(h, peers[0], tmp_path) as a,
        running(h, peers[1], tmp_path) as b,
        running(h, peers[2], tmp_path) as c,
        running(h, peers[3], tmp_path) as d,
    ):
        for node in (b, c, d):
            for other in peers:
                if other.node is not node and other.node is not None:
                    await node._net.connect(other.peer_id, [memory_addr(other.peer_id)])
        ref = await a.add_file(data)
        for node in (b, c):  # two more holders, fetched from alice
            node._files.note([ref])
            await node.fetch_file(ref.hash)
            assert node.file_info(ref.hash).complete
        served_before = {p.name: p.node._files.server.stats["chunks_served"] for p in peers[:3]}  # type: ignore[union-attr]
        cut = _VanishingHolder(b._files.server, chunks=2)
        b._net.set_stream_handler(BLOB_PROTOCOL, cut.handle)
        d._files.note([ref], sources=(peers[1].peer_id, peers[0].peer_id, peers[2].peer_id))
        out = await d.save_file(ref.hash, tmp_path / "got.bin")
        assert out.read_bytes() == data.read_bytes()
        assert cut.vanished
        served = {
            p.name: p.node._files.server.stats["chunks_served"] - served_before[p.name]  # type: ignore[union-attr]
            for p in peers[:3]
        }
        assert served["bob"] == 2
        assert served["alice"] > 0
        assert served["carol"] > 0
        assert served["alice"] + served["carol"] == 13 - 2


async def test_a_holder_serves_each_peer_within_its_rate_and_the_fetch_still_completes(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    data = _file(tmp_path, "big.bin", 4 * CHUNK_SIZE)
    slow = BlobConfig(serve_rate=CHUNK_SIZE, serve_burst=CHUNK_SIZE + 64)  # a chunk a second
    async with (
        hub() as h,
        running(h, alice, tmp_path, blobs=slow) as a,
        running(h, bob, tmp_path) as b,
    ):
        ref = await a.add_file(data)
        b._files.note([ref])
        started = trio.current_time()
        out = await b.save_file(ref.hash, tmp_path / "got.bin")
        assert out.read_bytes() == data.read_bytes()
        assert a._files.server.stats["rate_limited"] > 0
        assert trio.current_time() - started >= 3  # four chunks at one a second (mock time)


async def test_a_download_gives_up_with_a_reason_and_later_resumes_where_it_stopped(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, bob = new_peer("alice"), new_peer("bob")
    data = _file(tmp_path, "film.bin", 8 * CHUNK_SIZE + 1)
    async with hub() as h, running(h, alice, tmp_path) as a, running(h, bob, tmp_path) as b:
        ref = await a.add_file(data)
        server = a._files.server
        cut = _VanishingHolder(server, chunks=3)
        a._net.set_stream_handler(BLOB_PROTOCOL, cut.handle)
        b._files.note([ref])
        with pytest.raises(NetworkError, match="no holder could send it"):
            await b.fetch_file(ref.hash)

        def failures() -> list[str]:
            return [
                e.reason for e in bob.events if isinstance(e, FileProgress) and e.state == "failed"
            ]

        await wait_for(lambda: bool(failures()))
        assert failures() == ["no holder could send it (closed)"]
        assert b._files.store.have(ref.hash) == {0, 1, 2}
        a._net.set_stream_handler(BLOB_PROTOCOL, server.handle)  # alice is back
        before = server.stats["chunks_served"]
        out = await b.save_file(ref.hash, tmp_path / "film-copy.bin")
        assert out.read_bytes() == data.read_bytes()
        assert server.stats["chunks_served"] - before == 9 - 3  # only the rest was asked


async def test_a_group_of_four_gets_a_posted_file_and_a_share_card_photo(
    tmp_path: Path, autojump_clock: object
) -> None:
    peers = [new_peer(n) for n in ("alice", "bob", "carol", "dave")]
    video = _file(tmp_path, "clip.mp4", 6 * CHUNK_SIZE + 3)
    photo = _file(tmp_path, "record.jpg", 70_000)
    async with (
        hub() as h,
        running(h, peers[0], tmp_path) as a,
        running(h, peers[1], tmp_path) as b,
        running(h, peers[2], tmp_path) as c,
        running(h, peers[3], tmp_path) as d,
    ):
        group = await a.create_group("Vinyl collectors", tags=("vinyl",))
        for node in (b, c, d):
            await node.join_group(await a.invite(group))
        members = {p.account for p in peers}
        nodes = (a, b, c, d)
        await wait_for(lambda: all(set(n.group_state(group).members) == members for n in nodes))
        await a.post(group, "the clip", attachments=[video])
        card = await a.share(group, "Blue Note", "https://shop.example/bn", image=photo)
        (post,) = [m for m in a.group_history(group) if m.content is not None]
        (ref,) = attachments_of(post.content)  # type: ignore[arg-type]
        shown = a._groups.engine(group).message(card)
        assert shown is not None
        assert shown.share is not None
        image = shown.share.image
        assert image is not None
        assert image.key is not None

        # Every member fetches both at once (group media cache), verified, and opens them.
        def holds(node: Node, blob: bytes) -> bool:
            try:
                return node.file_info(blob).complete
            except NotFoundError:
                return False

        await wait_for(lambda: all(holds(n, ref.hash) and holds(n, image.hash) for n in nodes))
        assert {n.file_info(ref.hash).reason for n in (b, c, d)} == {"cache"}
        saved = await d.save_file(image.hash, tmp_path / "card.jpg")
        assert saved.read_bytes() == photo.read_bytes()
