"""Issue 18, history for a new device (devices.md section 4.4): only with the existing
device's consent, in bounded chunks, resumable without duplicates, never announced as new;
and edits, reactions and deletions made on one device reach our others. Real nodes on the
memory network."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import p2pchat.devices.history as history_module
from p2pchat.devices import LINK_HISTORY_META
from p2pchat.errors import PermissionDeniedError, WireError
from p2pchat.events import DeviceHistoryProgress, DeviceHistoryRequest, MessageReceived
from p2pchat.net.base import FramedStream
from p2pchat.node import Node
from p2pchat.protocol.device_history import (
    HISTORY_PROTOCOL,
    HistoryChunk,
    decode_history_message,
)
from p2pchat.protocol.device_history import MAX_HISTORY_FRAME as FRAME
from tests.node.harness import Peer, hub, new_peer, running, wait_for
from tests.node.test_fanout_memory import has_text, linked


async def _answer(peer: Peer, accept: bool, *, count: int = 1) -> None:
    node = peer.node
    assert node is not None
    for _ in range(count):
        await wait_for(lambda: node.pending_history() is not None)
        node.confirm_history(accept)
        await wait_for(lambda: node.pending_history() is None)


def _ids(messages: list[object]) -> list[tuple[bytes, int, bytes, str, str]]:
    return [
        (m.message_id, m.sent_at, m.sender_account, m.direction.value, m.state.value)  # type: ignore[attr-defined]
        for m in messages
    ]


async def _all(node: Node, account: bytes) -> list[object]:
    return list(await node.history(account, limit=1000))


def _progress(peer: Peer) -> list[DeviceHistoryProgress]:
    return [e for e in peer.events if isinstance(e, DeviceHistoryProgress)]


async def test_history_with_consent_resumes_without_duplicates_and_amendments_follow(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_module, "MAX_CHUNK_ITEMS", 2)  # several chunks from a few
    alice, bob = new_peer("alice"), new_peer("bob")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a1,
        running(h, bob, tmp_path) as b,
    ):
        await b.add_contact(alice.account.hex(), name="Alice")
        await a1.add_contact(bob.account.hex(), name="Bob")
        first = await b.send_dm(alice.account, "old one")
        await wait_for(lambda: has_text(alice, "old one"))
        for i in range(3):
            await b.send_dm(alice.account, f"bob {i}")
            await a1.send_dm(bob.account, f"alice {i}")
        await wait_for(lambda: has_text(alice, "bob 2") and has_text(bob, "alice 2"))
        mine = (await a1.send_dm(bob.account, "typo")).message_id
        await a1.edit_dm(bob.account.hex(), mine, "fixed")
        await a1.react_dm(bob.account.hex(), first.message_id, "👍")
        await wait_for(lambda: sum(isinstance(e, MessageReceived) for e in bob.events) >= 6)
        await a1.mark_read("dm:" + bob.account.hex())
        expected = _ids(await _all(a1, bob.account))
        assert len(expected) == 10

        async with linked(h, alice, "desktop", tmp_path) as alice2:
            a2 = alice2.node
            assert a2 is not None
            laptop = alice.identity.device.public_key

            # Refused: nothing is sent, nothing stored.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_answer, alice, False)
                with pytest.raises(PermissionDeniedError, match="refused"):
                    await a2.sync_history(laptop)
            assert not [c for c in await a2.conversations() if c.peer_account == bob.account]

            # A window: only what was sent since the "typo" message.
            since = (await a1.message(mine)).sent_at
            window = [e for e in expected if e[1] >= since]
            assert 3 <= len(window) < len(expected)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_answer, alice, True)
                recent = await a2.sync_history(laptop, since=since)
            assert (recent.received, recent.imported, recent.done) == (
                len(window),
                len(window),
                True,
            )
            assert sorted(_ids(await _all(a2, bob.account))) == sorted(window)

            # A cap: the first 3 messages only (those already here are not stored twice).
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_answer, alice, True)
                capped = await a2.sync_history(laptop, max_messages=3)
            assert (capped.received, capped.imported, capped.done) == (3, 3, True)
            assert sorted(_ids(await _all(a2, bob.account))) == sorted(window + expected[:3])

            # Interrupted after the first chunk, then resumed from the cursor.
            history = a2._history
            assert history is not None
            real_import = history._import
            cut = trio.CancelScope()

            async def import_then_cut(*args: object) -> int:
                added = await real_import(*args)  # type: ignore[arg-type]
                cut.cancel()  # the stream dies after this chunk is stored
                return added

            history._import = import_then_cut  # type: ignore[method-assign,assignment]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_answer, alice, True)
                with cut:
                    await a2.sync_history(laptop)
                assert cut.cancelled_caught
            del history._import
            partial = len(await _all(a2, bob.account))
            assert len(window) + 3 <= partial < 10
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_answer, alice, True)
                result = await a2.sync_history(laptop)
            asks = [e for e in alice.events if isinstance(e, DeviceHistoryRequest)]
            assert [a.resume for a in asks] == [False, False, False, False, True]
            assert result.done
            assert result.received == result.total == 10
            # Same ids, times, senders, directions, delivery summaries; no duplicate.
            assert sorted(_ids(await _all(a2, bob.account))) == sorted(expected)
            # Listed in time order, not in the order they were imported (the newest first):
            # one sequence, page by page, no gap, no duplicate.
            assert _ids(await _all(a2, bob.account)) == expected
            pages: list[object] = []
            bound = 2**53
            while page := await a2.history(bob.account, before_seq=bound, limit=3):
                pages = list(page) + pages
                bound = page[0].seq
            assert _ids(pages) == expected
            assert not [e for e in alice2.events if isinstance(e, MessageReceived)]
            conversation = next(c for c in await a2.conversations() if c.peer_account)
            assert conversation.unread == 0
            folded = await a2.folded_history(bob.account)
            edited = next(f for f in folded if f.message.message_id == mine)
            assert edited.changes is not None
            assert (edited.changes.edited, edited.changes.text) == (True, "fixed")
            assert _progress(alice2)[-1].done

            # Item of issue 18: a deletion (and an edit) made on the laptop reach the desktop.
            await a1.delete_dm(bob.account.hex(), mine)
            later = await a1.send_dm(bob.account, "live")
            await a1.edit_dm(bob.account.hex(), later.message_id, "live, edited")
            await wait_for(lambda: has_text(alice2, "live, edited"), within=60)

            async def state_on_desktop() -> tuple[bool, str]:
                folded = await a2.folded_history(bob.account)
                gone = next(f for f in folded if f.message.message_id == mine)
                live = next(f for f in folded if f.message.message_id == later.message_id)
                return (
                    gone.changes is not None and gone.changes.deleted,
                    (live.changes.text or "") if live.changes else "",
                )

            with trio.fail_after(60):
                while await state_on_desktop() != (True, "live, edited"):  # noqa: ASYNC110
                    await trio.sleep(0.05)


async def test_a_device_linked_with_history_asks_for_it_once_it_runs(
    tmp_path: Path, autojump_clock: object
) -> None:
    # `node run --link CODE --history all` (or `devices join CODE --history all`): the
    # new device asks on its first start; the linking device's user still decides.
    alice, bob = new_peer("alice"), new_peer("bob")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a1,
        running(h, bob, tmp_path) as b,
    ):
        await b.add_contact(alice.account.hex(), name="Alice")
        await a1.add_contact(bob.account.hex(), name="Bob")
        await b.send_dm(alice.account, "before the link")
        await a1.send_dm(bob.account, "mine, before the link")
        await wait_for(lambda: has_text(alice, "before the link"))
        expected = _ids(await _all(a1, bob.account))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, alice, True)
            async with linked(h, alice, "desktop", tmp_path, history_since=0) as alice2:
                a2 = alice2.node
                assert a2 is not None
                await wait_for(lambda: bool(_progress(alice2)) and _progress(alice2)[-1].done)
                assert _ids(await _all(a2, bob.account)) == expected
                # Answered: not asked again at the next start.
                assert await alice2.store.get_meta(LINK_HISTORY_META) is None
        # Refused there: nothing stored, and the ask is dropped (history-sync asks again).
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, alice, False)
            async with linked(h, alice, "tablet", tmp_path, history_since=5) as alice3:
                assert alice3.node is not None
                await wait_for(lambda: len(_asks(alice)) == 2)
                store = alice3.store
                with trio.fail_after(30):
                    while await store.get_meta(LINK_HISTORY_META) is not None:  # noqa: ASYNC110
                        await trio.sleep(0.05)
                assert not [c for c in await alice3.node.conversations() if c.peer_account]
        assert [(a.since, a.max, a.resume) for a in _asks(alice)] == [
            (0, 1000, False),
            (5, 1000, False),
        ]


def _asks(peer: Peer) -> list[DeviceHistoryRequest]:
    return [e for e in peer.events if isinstance(e, DeviceHistoryRequest)]


async def _garbage_server(frames: list[bytes], stream: FramedStream) -> None:
    request = decode_history_message(await stream.read_frame(FRAME) or b"")
    assert request.KIND == "hreq"
    for frame in frames:
        await stream.write_frame(frame)


async def test_bad_chunks_get_typed_errors_and_leave_the_node_unharmed(
    tmp_path: Path, autojump_clock: object
) -> None:
    alice = new_peer("alice")
    async with (
        hub() as h,
        running(h, alice, tmp_path) as a1,
        linked(h, alice, "desktop", tmp_path) as alice2,
    ):
        a2 = alice2.node
        assert a2 is not None
        laptop = alice.identity.device.public_key
        network = a1._network
        assert network is not None
        bad = [
            (b"\x00" * (FRAME + 1), "frame-too-large"),
            (b"\xff\xfe not cbor", None),
            (HistoryChunk(t="hchunk", v=1, n=0, box=b"\x01" * 64).to_bytes(), "bad-box"),
        ]
        for frame, reason in bad:

            async def serve(stream: FramedStream, frame: bytes = frame) -> None:
                await _garbage_server([frame], stream)

            network.set_stream_handler(HISTORY_PROTOCOL, serve)
            with pytest.raises(WireError) as caught:
                await a2.sync_history(laptop)
            if reason is not None:
                assert caught.value.reason == reason
            assert not await a2.conversations()
            assert _progress(alice2)[-1].error
        # The desktop still works: the real server sends (empty) history with consent.
        assert a1._history is not None
        a1._history.start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, alice, True)
            result = await a2.sync_history(laptop)
        assert (result.received, result.done) == (0, True)
        assert a2.devices()
        # Not one of our devices: refused with a typed error before any stream.
        with pytest.raises(Exception, match="not another current device"):
            await a2.sync_history(b"\x07" * 32)
