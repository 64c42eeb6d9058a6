"""Attachments of mail left at a mailbox: the mailbox holds the encrypted file too, so the
recipient gets it after the sender went offline; a mailbox over quota says why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from p2pchat.config import BlobConfig, MailboxConfig
from p2pchat.errors import NotFoundError
from p2pchat.events import DeliveryChanged, FileProgress, MessageReceived
from p2pchat.net.memory import MemoryHub, memory_addr
from p2pchat.node import Node
from p2pchat.protocol.blob import CHUNK_SIZE
from p2pchat.protocol.content import Content, attachments_of
from p2pchat.protocol.mailbox import (
    MAILBOX_PROTOCOL,
    MailboxRefused,
    MailboxStore,
    MailboxStored,
    decode_mailbox_frame,
    encode_mailbox_frame,
)
from tests.node.harness import Peer, hub, new_peer, running, wait_for


def _file(tmp: Path, name: str, size: int) -> Path:
    path = tmp / name
    path.write_bytes(bytes((i * 131 + 17) % 251 for i in range(size)))
    return path


def _complete(node: Node, blob_id: bytes) -> bool:
    try:
        return node.file_info(blob_id).complete
    except NotFoundError:
        return False  # the message has not arrived yet


def _mailbox_events(peer: Peer) -> list[FileProgress]:
    return [e for e in peer.events if isinstance(e, FileProgress) and e.direction == "mailbox"]


def _sent(peer: Peer, message_id: bytes) -> bool:
    return any(
        isinstance(e, DeliveryChanged) and e.message_id == message_id and e.state == "sent"
        for e in peer.events
    )


@asynccontextmanager
async def _contacts_with_mailbox(
    tmp: Path, carol_blobs: BlobConfig | None = None
) -> AsyncIterator[tuple[MemoryHub, Peer, Peer, Node, MailboxConfig]]:
    """Carol runs a mailbox that Bob uses; Alice knows Bob's mailbox keys; Bob is away."""
    alice, bob, carol = new_peer("alice"), new_peer("bob"), new_peer("carol")
    bob_uses_carol = MailboxConfig(use=(carol.peer_id,))
    async with (
        hub() as h,
        running(h, carol, tmp, mailbox=MailboxConfig(enabled=True), blobs=carol_blobs) as c,
    ):
        async with running(h, alice, tmp) as a, running(h, bob, tmp, mailbox=bob_uses_carol) as b:
            await a.send_dm(bob.account, "hi bob")
            await wait_for(lambda: any(isinstance(e, MessageReceived) for e in bob.events))
            await b.accept_contact(alice.account)  # bob tells alice his mailbox keys
            await wait_for(lambda: a._dms.stats.get("control", 0) == 1)
        yield h, alice, bob, c, bob_uses_carol


async def test_a_file_left_at_the_mailbox_reaches_the_recipient_after_the_sender_left(
    tmp_path: Path, autojump_clock: object
) -> None:
    photo = _file(tmp_path, "beach.jpg", 3 * CHUNK_SIZE + 1234)
    async with _contacts_with_mailbox(tmp_path) as (h, alice, bob, c, bob_uses_carol):
        async with running(h, alice, tmp_path) as a:
            sent = await a.send_dm(bob.account, "for when you are back", attachments=[photo])
            await wait_for(lambda: _sent(alice, sent.message_id))
            # The file went to carol before the message did.
            assert [e.state for e in _mailbox_events(alice)] == ["done"]
            assert c._mailbox_blobs is not None
            assert c._mailbox_blobs.stats["held"] == 1
        # Alice is offline now; carol holds ciphertext she cannot read.
        (held,) = [i for i in c.files() if i.reason == "mailbox"]
        assert held.complete
        assert held.ref is None
        for blob in (tmp_path / "carol" / "blobs").iterdir():
            assert photo.read_bytes()[:4096] not in blob.read_bytes()

        async with running(h, bob, tmp_path, mailbox=bob_uses_carol) as b:
            await wait_for(lambda: _complete(b, held.blob_id))
            out = await b.save_file(held.blob_id, tmp_path / "got.jpg")
            assert out.read_bytes() == photo.read_bytes()
            message = await b._s.get_message(sent.message_id)
            assert message is not None
            content = Content.from_bytes(message.body, max_size=1 << 16)
            assert [r.hash for r in attachments_of(content)] == [held.blob_id]
            # Every chunk came from carol: alice was gone.
            downs = [e for e in bob.events if isinstance(e, FileProgress) and e.direction == "down"]
            assert downs[-1].state == "done"
            assert (await c.statistics())["files"]["serving"]["chunks_served"] == 4


async def test_a_mailbox_over_quota_refuses_the_file_with_a_reason_and_the_message_still_goes(
    tmp_path: Path, autojump_clock: object
) -> None:
    big = _file(tmp_path, "video.bin", 2 * CHUNK_SIZE)
    small_share = BlobConfig(mailbox_bytes_per_peer=CHUNK_SIZE)
    async with _contacts_with_mailbox(tmp_path, small_share) as (h, alice, bob, c, _):
        async with running(h, alice, tmp_path) as a:
            sent = await a.send_dm(bob.account, "too big for the mailbox", attachments=[big])
            await wait_for(lambda: _sent(alice, sent.message_id))
            (refused,) = _mailbox_events(alice)
            assert refused.state == "failed"
            assert refused.reason == (
                "quota-sender: the mailbox holds no more files from this sender,"
                f" at most {CHUNK_SIZE:,} bytes"
            )
        assert c._mailbox.stats["stored"] == 1  # the mail itself was left there
        assert not [i for i in c.files() if i.reason == "mailbox"]
        assert c._mailbox_blobs is not None
        assert c._mailbox_blobs.stats["refused"] == 1
        assert any(isinstance(e, MessageReceived) for e in bob.events)  # the first one


async def test_a_full_mailbox_answers_why_instead_of_dropping_the_stream(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice, carol = new_peer("alice"), new_peer("carol")
    one_item = MailboxConfig(enabled=True, max_items_per_sender=1)
    async with (
        hub() as h,
        running(h, carol, tmp_path, mailbox=one_item),
        running(h, alice, tmp_path) as a,
    ):
        assert a._network is not None
        await a._network.connect(carol.peer_id, (memory_addr(carol.peer_id),))
        stream = await a._network.open_stream(carol.peer_id, MAILBOX_PROTOCOL)
        store = MailboxStore(tag=bytes(32), blob=b"sealed", ttl=60)
        replies = []
        for _ in range(2):
            await stream.write_frame(encode_mailbox_frame(store))
            frame = await stream.read_frame(1 << 16)
            assert frame is not None
            replies.append(decode_mailbox_frame(frame))
        await stream.close()
    assert isinstance(replies[0], MailboxStored)
    assert replies[1] == MailboxRefused(why="quota-sender")


async def test_files_pending_for_a_mailbox_survive_a_restart_of_the_sender(
    tmp_path: Path, autojump_clock: object
) -> None:
    photo = _file(tmp_path, "cat.jpg", CHUNK_SIZE + 99)
    async with _contacts_with_mailbox(tmp_path) as (h, alice, bob, c, _):
        carol = c._net.peer_id
        h.set_down(carol)  # the mailbox is away too: neither the file nor the mail goes
        async with running(h, alice, tmp_path) as a:
            sent = await a.send_dm(bob.account, "when you can", attachments=[photo])
            assert a._mailbox_blobs is not None
            (pending,) = a._mailbox_blobs.pending(f"dm:{bob.account.hex()}")
            await wait_for(lambda: bool(_mailbox_events(alice)))  # one offer failed
        assert not [i for i in c.files() if i.reason == "mailbox"]
        h.set_up(carol)
        alice.events.clear()
        async with running(h, alice, tmp_path) as a:  # a new process: nothing in memory
            await wait_for(lambda: _sent(alice, sent.message_id))
            assert [e.state for e in _mailbox_events(alice)] == ["done"]
            assert a._mailbox_blobs is not None
            assert not a._mailbox_blobs.pending(f"dm:{bob.account.hex()}")
        (held,) = [i for i in c.files() if i.reason == "mailbox"]
        assert held.blob_id == pending.hash
        assert held.complete
