"""The store contract: every test runs against SqliteStore and MemoryStore alike.

The record builders at the top are imported by the other ``test_store_*`` modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pchat.errors import ClosedError, LocalProtocolError, NotFoundError, StorageError
from p2pchat.storage import (
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    DeliveryState,
    DeviceDelivery,
    DhtRecord,
    Direction,
    MailboxItem,
    MailboxQuota,
    MemoryStore,
    NewMessage,
    NewOutboxItem,
    Peer,
    PeerSource,
    QuotaExceededError,
    SessionRecord,
    SqliteStore,
    Store,
    Transaction,
)
from tests.conftest import NOW_MS

# -- record builders --------------------------------------------------------------------


def key(n: int) -> bytes:
    """A distinct 32-byte account or device key for a small integer."""
    return n.to_bytes(2, "big") * 16


def contact(n: int, state: ContactState = ContactState.ACCEPTED) -> Contact:
    return Contact(
        account=key(n),
        display_name=f"contact {n}",
        state=state,
        identity=b"identity-%d" % n,
        devices=b"devices-%d" % n,
        created_at=NOW_MS,
        updated_at=NOW_MS + n,
    )


def session(
    account: int, device: int, sid: bytes, *, at: int, pickle: bytes = b"p"
) -> SessionRecord:
    return SessionRecord(
        account=key(account), device=key(device), session_id=sid, pickle=pickle, updated_at=at
    )


def dm(cid: str = "dm-1", peer: int = 1, *, at: int = NOW_MS) -> Conversation:
    return Conversation(
        conversation_id=cid, kind=ConversationKind.DM, peer_account=key(peer), last_activity=at
    )


def message(
    mid: bytes,
    cid: str = "dm-1",
    *,
    direction: Direction = Direction.IN,
    at: int = NOW_MS,
    body: bytes = b"\xa1dtext",
) -> NewMessage:
    return NewMessage(
        conversation_id=cid,
        message_id=mid,
        sender_account=key(1),
        sender_device=key(2),
        direction=direction,
        content_type="text/plain",
        body=body,
        sent_at=at - 5,
        received_at=at,
        state=DeliveryState.DELIVERED if direction is Direction.IN else DeliveryState.QUEUED,
    )


def outbox(n: int, *, at: int = NOW_MS) -> NewOutboxItem:
    return NewOutboxItem(
        destination_account=key(n), message_id=b"m%d" % n, payload=b"frame-%d" % n, created_at=at
    )


def envelope(
    item: bytes,
    *,
    sender: bytes = b"s1",
    recipient: bytes = b"r1",
    size: int = 10,
    at: int = NOW_MS,
    ttl: int = 1000,
) -> MailboxItem:
    return MailboxItem(
        item_id=item,
        recipient_tag=recipient,
        sender_tag=sender,
        blob=b"x" * size,
        stored_at=at,
        expires_at=at + ttl,
    )


def peer(pid: str, *, seen: int, source: PeerSource = PeerSource.DHT) -> Peer:
    return Peer(
        peer_id=pid,
        addrs=(f"/ip4/127.0.0.1/tcp/{seen % 60000}", "/ip4/127.0.0.1/udp/1/quic-v1"),
        account=key(7),
        last_seen=seen,
        display_name="nearby",
        source=source,
    )


QUOTA = MailboxQuota(
    max_items_per_sender=3, max_bytes_per_sender=100, max_items_total=5, max_bytes_total=1000
)


@pytest.fixture(params=["sqlite", "sqlite-sealed", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param.startswith("sqlite"):
        seal_key = bytes(range(32)) if request.param == "sqlite-sealed" else None
        async with await SqliteStore.open(tmp_path / "store.db", seal_key=seal_key) as sqlite_store:
            yield sqlite_store
    else:
        async with MemoryStore() as memory_store:
            yield memory_store


# -- meta, contacts, sessions -----------------------------------------------------------


async def test_meta_round_trip_replace_and_delete(store: Store) -> None:
    assert await store.get_meta("owner") is None
    await store.put_meta("owner", b"\x00account")
    await store.put_meta("owner", b"\x01account")
    await store.put_meta("empty", b"")
    assert await store.get_meta("owner") == b"\x01account"
    assert await store.get_meta("empty") == b""
    assert await store.delete_meta("owner") is True
    assert await store.delete_meta("owner") is False
    assert await store.get_meta("owner") is None


async def test_contacts_upsert_list_filter_and_block(store: Store) -> None:
    for n, state in [
        (3, ContactState.BLOCKED),
        (1, ContactState.ACCEPTED),
        (2, ContactState.BLOCKED),
    ]:
        await store.put_contact(contact(n, state))
    assert await store.get_contact(key(1)) == contact(1)
    assert await store.get_contact(key(9)) is None
    assert [c.account for c in await store.list_contacts()] == [key(1), key(2), key(3)]
    blocked = await store.list_contacts(state=ContactState.BLOCKED)
    assert [c.account for c in blocked] == [key(2), key(3)]
    assert [await store.is_blocked(key(n)) for n in (1, 2, 3, 9)] == [False, True, True, False]
    # Unblocking is a replace.
    await store.put_contact(contact(2, ContactState.ACCEPTED))
    assert await store.is_blocked(key(2)) is False
    assert await store.delete_contact(key(3)) is True
    assert await store.delete_contact(key(3)) is False
    assert [c.account for c in await store.list_contacts()] == [key(1), key(2)]


async def test_a_contacts_claimed_name_is_kept_beside_ours(store: Store) -> None:
    """Issue 16 item 12: the name they give themselves, next to the one we chose."""
    claimed = dataclasses.replace(contact(4), claimed_name="Quentin \u202e")
    await store.put_contact(claimed)
    assert await store.get_contact(key(4)) == claimed
    await store.put_contact(dataclasses.replace(claimed, claimed_name=None))
    assert (await store.list_contacts())[0].claimed_name is None


async def test_several_sessions_per_peer_most_recent_first(store: Store) -> None:
    await store.put_session(session(1, 10, b"a", at=100, pickle=b"old"))
    await store.put_session(session(1, 10, b"b", at=300))
    await store.put_session(session(1, 11, b"a", at=200))
    await store.put_session(session(2, 10, b"a", at=999))
    await store.put_session(session(1, 10, b"a", at=400, pickle=b"new"))  # replaces
    listed = await store.list_sessions(key(1))
    assert [(s.device, s.session_id, s.updated_at) for s in listed] == [
        (key(10), b"a", 400),
        (key(10), b"b", 300),
        (key(11), b"a", 200),
    ]
    assert [s.session_id for s in await store.list_sessions(key(1), device=key(11))] == [b"a"]
    got = await store.get_session(key(1), key(10), b"a")
    assert got is not None
    assert got.pickle == b"new"
    assert await store.delete_session(key(1), key(10), b"a") is True
    assert await store.delete_session(key(1), key(10), b"a") is False
    assert await store.get_session(key(1), key(10), b"a") is None
    assert await store.list_sessions(key(3)) == []


async def test_session_peers_are_listed_once_each_sorted(store: Store) -> None:
    assert await store.list_session_peers() == []
    await store.put_session(session(2, 10, b"a", at=100))
    await store.put_session(session(1, 11, b"a", at=200))
    await store.put_session(session(1, 11, b"b", at=300))  # same peer, second session
    await store.put_session(session(1, 10, b"a", at=400))
    assert await store.list_session_peers() == [
        (key(1), key(10)),
        (key(1), key(11)),
        (key(2), key(10)),
    ]
    await store.delete_session(key(2), key(10), b"a")
    assert (key(2), key(10)) not in await store.list_session_peers()


# -- conversations and messages ---------------------------------------------------------


async def test_messages_get_increasing_seq_per_conversation(store: Store) -> None:
    await store.put_conversation(dm("dm-1", 1))
    await store.put_conversation(dm("dm-2", 2))
    seqs = []
    for i in range(6):
        cid = "dm-1" if i % 3 else "dm-2"
        added = await store.add_message(message(b"m%d" % i, cid, at=NOW_MS + i))
        assert not added.duplicate
        seqs.append((cid, added.message.seq))
    assert [s for c, s in seqs if c == "dm-1"] == [1, 2, 3, 4]
    assert [s for c, s in seqs if c == "dm-2"] == [1, 2]
    stored = await store.get_message(b"m4")
    assert stored is not None
    assert (stored.seq, stored.body, stored.received_at) == (3, b"\xa1dtext", NOW_MS + 4)


async def test_duplicate_message_id_changes_nothing(store: Store) -> None:
    await store.put_conversation(dm())
    first = await store.add_message(message(b"once", at=NOW_MS + 10))
    before = (await store.get_conversation("dm-1"), await store.statistics())
    again = await store.add_message(message(b"once", body=b"other", at=NOW_MS + 99))
    assert again.duplicate
    assert again.message == first.message
    assert (await store.get_conversation("dm-1"), await store.statistics()) == before
    assert len(await store.list_messages("dm-1")) == 1


async def test_message_updates_conversation_activity_and_unread(store: Store) -> None:
    await store.put_conversation(dm(at=NOW_MS))
    await store.add_message(message(b"in1", at=NOW_MS + 50))
    await store.add_message(message(b"out1", direction=Direction.OUT, at=NOW_MS + 60))
    await store.add_message(message(b"in-late", at=NOW_MS + 20))  # older clock: no rewind
    # A reaction (edit, deletion) to a message is stored, but is not one more unread.
    reaction = dataclasses.replace(message(b"react", at=NOW_MS + 30), content_type="p2pchat/react")
    await store.add_message(reaction)
    conv = await store.get_conversation("dm-1")
    assert conv is not None
    assert (conv.unread, conv.last_activity) == (2, NOW_MS + 60)
    await store.mark_read("dm-1")
    conv = await store.get_conversation("dm-1")
    assert conv is not None
    assert conv.unread == 0
    with pytest.raises(NotFoundError):
        await store.mark_read("nope")
    with pytest.raises(NotFoundError):
        await store.add_message(message(b"orphan", "nope"))
    assert await store.get_message(b"orphan") is None


async def test_put_conversation_keeps_the_seq_counter(store: Store) -> None:
    await store.put_conversation(dm())
    await store.add_message(message(b"a"))
    await store.put_conversation(dm(at=NOW_MS + 1000))
    assert (await store.add_message(message(b"b"))).message.seq == 2


async def test_conversations_listed_by_recent_activity(store: Store) -> None:
    for cid, at in [("b", 5), ("a", 5), ("c", 9), ("d", 1)]:
        await store.put_conversation(dm(cid, at=at))
    group = Conversation(
        conversation_id="g", kind=ConversationKind.GROUP, peer_account=None, last_activity=7
    )
    await store.put_conversation(group)
    listed = await store.list_conversations()
    assert [c.conversation_id for c in listed] == ["c", "g", "a", "b", "d"]
    assert await store.get_conversation("g") == group


@pytest.mark.parametrize(
    ("before", "after", "limit"),
    [
        (None, None, 50),
        (None, None, 3),
        (8, None, 3),
        (None, 4, 3),
        (9, 2, 50),
        (3, 2, 5),
        (1, None, 5),
    ],
)
async def test_message_pagination(
    store: Store, before: int | None, after: int | None, limit: int
) -> None:
    await store.put_conversation(dm())
    await store.put_conversation(dm("other", 2))
    for i in range(1, 11):
        await store.add_message(message(b"m%d" % i))
        await store.add_message(message(b"o%d" % i, "other"))
    page = await store.list_messages("dm-1", before_seq=before, after_seq=after, limit=limit)
    window = [
        s for s in range(1, 11) if (after is None or s > after) and (before is None or s < before)
    ]
    expected = window[-limit:] if before is not None and after is None else window[:limit]
    assert [m.seq for m in page] == expected
    assert all(m.message_id == b"m%d" % m.seq for m in page)


async def _pages(store: Store, limit: int, *, backwards: bool) -> list[bytes]:
    """A whole conversation read page by page the way dm.history's ``next`` does it."""
    seen: list[bytes] = []
    bound: int | None = None
    while True:
        if backwards:
            page = await store.list_messages("dm-1", before_seq=bound or 2**53, limit=limit)
        else:
            page = await store.list_messages("dm-1", after_seq=bound or 0, limit=limit)
        if not page:
            return seen
        seen = (
            [m.message_id for m in page] + seen
            if backwards
            else seen + [m.message_id for m in page]
        )
        bound = page[0].seq if backwards else page[-1].seq


async def test_imported_older_messages_are_listed_at_their_place_in_time(store: Store) -> None:
    # A new device received two messages live, then imports the older history (and one
    # message from between the live ones, and one at the same instant as a live one).
    await store.put_conversation(dm())
    for mid, at in [(b"live1", 1000), (b"live2", 3000)]:
        await store.add_message(message(mid, at=at))
    for mid, at in [(b"old1", 100), (b"old2", 200), (b"mid", 2000), (b"same", 1000)]:
        await store.add_message(message(mid, at=at))
    in_time = [b"old1", b"old2", b"live1", b"same", b"mid", b"live2"]
    assert [m.message_id for m in await store.list_messages("dm-1")] == in_time
    for limit in (1, 2, 4, 50):
        assert await _pages(store, limit, backwards=True) == in_time
        assert await _pages(store, limit, backwards=False) == in_time
    seq = {m.message_id: m.seq for m in await store.list_messages("dm-1")}
    # Bounds name messages: after live1 comes same (seq 6), before mid come the first four.
    after = await store.list_messages("dm-1", after_seq=seq[b"live1"], limit=2)
    assert [m.message_id for m in after] == [b"same", b"mid"]
    before = await store.list_messages("dm-1", before_seq=seq[b"mid"])
    assert [m.message_id for m in before] == in_time[:4]
    both = await store.list_messages("dm-1", after_seq=seq[b"old2"], before_seq=seq[b"live2"])
    assert [m.message_id for m in both] == in_time[2:5]
    # A seq no message has stands for the nearest one in seq order (0: the start).
    assert [m.message_id for m in await store.list_messages("dm-1", before_seq=99)] == in_time
    assert [m.message_id for m in await store.list_messages("dm-1", after_seq=0)] == in_time
    beyond = await store.list_messages("dm-1", after_seq=99)
    assert beyond == await store.list_messages("dm-1", after_seq=seq[b"same"])
    assert [m.message_id for m in beyond] == [b"mid", b"live2"]


async def test_delivery_state_and_failure_reason(store: Store) -> None:
    await store.put_conversation(dm())
    await store.add_message(message(b"out", direction=Direction.OUT))
    await store.set_delivery(b"out", DeliveryState.SENT)
    got = await store.get_message(b"out")
    assert got is not None
    assert (got.state, got.failure_reason) == (DeliveryState.SENT, None)
    await store.set_delivery(b"out", DeliveryState.FAILED, reason="peer unreachable")
    got = await store.get_message(b"out")
    assert got is not None
    assert (got.state, got.failure_reason) == (DeliveryState.FAILED, "peer unreachable")
    with pytest.raises(ValueError, match="reason"):
        await store.set_delivery(b"out", DeliveryState.SENT, reason="no")
    with pytest.raises(NotFoundError):
        await store.set_delivery(b"missing", DeliveryState.SENT)


async def test_device_deliveries_are_kept_per_device(store: Store) -> None:
    def delivery(device: bytes, state: DeliveryState, at: int, **kw: str) -> DeviceDelivery:
        return DeviceDelivery(message_id=b"m1", device=device, state=state, updated_at=at, **kw)

    assert await store.list_device_deliveries(b"m1") == []
    await store.set_device_delivery(delivery(b"\x02" * 32, DeliveryState.QUEUED, 1))
    await store.set_device_delivery(delivery(b"\x01" * 32, DeliveryState.SENT, 2))
    async with store.transaction() as tx:  # replaced, not added
        await tx.set_device_delivery(delivery(b"\x02" * 32, DeliveryState.DELIVERED, 3))
    got = await store.list_device_deliveries(b"m1")
    assert [(d.device[0], d.state, d.updated_at) for d in got] == [
        (1, DeliveryState.SENT, 2),
        (2, DeliveryState.DELIVERED, 3),
    ]
    assert await store.list_device_deliveries(b"m2") == []
    with pytest.raises(ValueError, match="device"):
        delivery(b"short", DeliveryState.SENT, 1)


# -- outbox -----------------------------------------------------------------------------


async def test_outbox_due_reschedule_remove(store: Store) -> None:
    a = await store.add_outbox(outbox(1, at=NOW_MS + 20))
    b = await store.add_outbox(outbox(2, at=NOW_MS + 10))
    c = await store.add_outbox(outbox(3, at=NOW_MS + 10))
    assert a.item_id < b.item_id < c.item_id
    assert (a.attempts, a.next_attempt_at, a.last_error) == (0, NOW_MS + 20, None)
    assert await store.due_outbox(NOW_MS) == []
    assert [i.item_id for i in await store.due_outbox(NOW_MS + 20)] == [
        b.item_id,
        c.item_id,
        a.item_id,
    ]
    assert [i.item_id for i in await store.due_outbox(NOW_MS + 20, limit=1)] == [b.item_id]

    later = await store.reschedule_outbox(b.item_id, next_attempt_at=NOW_MS + 500, error="timeout")
    assert (later.attempts, later.next_attempt_at, later.last_error) == (1, NOW_MS + 500, "timeout")
    assert later.payload == b"frame-2"
    assert [i.item_id for i in await store.due_outbox(NOW_MS + 499)] == [c.item_id, a.item_id]
    again = await store.reschedule_outbox(b.item_id, next_attempt_at=NOW_MS + 900, error=None)
    assert (again.attempts, again.last_error) == (2, None)

    assert await store.remove_outbox(c.item_id) is True
    assert await store.remove_outbox(c.item_id) is False
    with pytest.raises(NotFoundError):
        await store.reschedule_outbox(c.item_id, next_attempt_at=NOW_MS, error=None)
    d = await store.add_outbox(outbox(4))
    assert d.item_id > c.item_id  # ids are never reused


# -- mailbox ----------------------------------------------------------------------------


async def test_mailbox_put_fetch_delete_expire(store: Store) -> None:
    assert await store.put_mailbox(envelope(b"e2", at=NOW_MS + 1), quota=QUOTA)
    assert await store.put_mailbox(envelope(b"e1", at=NOW_MS, ttl=100), quota=QUOTA)
    assert await store.put_mailbox(envelope(b"e3", recipient=b"r2"), quota=QUOTA)
    assert not await store.put_mailbox(envelope(b"e1", size=50), quota=QUOTA)  # held already
    fetched = await store.fetch_mailbox(b"r1", now=NOW_MS)
    assert [m.item_id for m in fetched] == [b"e1", b"e2"]
    assert fetched[0].size == 10
    assert fetched[0].blob == b"x" * 10
    assert [m.item_id for m in await store.fetch_mailbox(b"r1", now=NOW_MS, limit=1)] == [b"e1"]
    # Expired items are never handed out, then deleted by expire().
    assert [m.item_id for m in await store.fetch_mailbox(b"r1", now=NOW_MS + 100)] == [b"e2"]
    assert await store.expire_mailbox(NOW_MS + 100) == 1
    assert await store.delete_mailbox([b"e2", b"e2", b"nope"]) == 1
    assert await store.fetch_mailbox(b"r1", now=NOW_MS) == []
    stats = await store.statistics()
    assert (stats.mailbox_items, stats.mailbox_bytes) == (1, 10)


@pytest.mark.parametrize(
    ("fill", "item", "scope"),
    [
        # three items from s1 already: a fourth exceeds the per-sender item quota
        ([(b"s1", 10)] * 3, (b"s1", 10), "sender"),
        # 90 bytes from s1: 11 more exceed the per-sender byte quota
        ([(b"s1", 90)], (b"s1", 11), "sender"),
        # five senders fill the total item quota
        ([(b"s%d" % i, 10) for i in range(5)], (b"s9", 10), "total"),
        # exactly at both per-sender limits (3 items, 100 bytes): accepted
        ([(b"s1", 45), (b"s1", 45)], (b"s1", 10), None),
    ],
)
async def test_mailbox_quotas_are_enforced_atomically(
    store: Store, fill: list[tuple[bytes, int]], item: tuple[bytes, int], scope: str | None
) -> None:
    for i, (sender, size) in enumerate(fill):
        assert await store.put_mailbox(envelope(b"f%d" % i, sender=sender, size=size), quota=QUOTA)
    before = await store.statistics()
    sender, size = item
    if scope is None:
        assert await store.put_mailbox(envelope(b"new", sender=sender, size=size), quota=QUOTA)
        return
    with pytest.raises(QuotaExceededError) as info:
        await store.put_mailbox(envelope(b"new", sender=sender, size=size), quota=QUOTA)
    assert info.value.scope == scope
    assert isinstance(info.value, StorageError)
    assert await store.statistics() == before


async def test_mailbox_total_bytes_quota(store: Store) -> None:
    quota = MailboxQuota(
        max_items_per_sender=10, max_bytes_per_sender=500, max_items_total=10, max_bytes_total=250
    )
    await store.put_mailbox(envelope(b"a", sender=b"s1", size=200), quota=quota)
    with pytest.raises(QuotaExceededError) as info:
        await store.put_mailbox(envelope(b"b", sender=b"s2", size=51), quota=quota)
    assert info.value.scope == "total"
    assert await store.put_mailbox(envelope(b"c", sender=b"s2", size=50), quota=quota)


async def test_expired_mailbox_items_do_not_count_against_quota(store: Store) -> None:
    for i in range(3):
        await store.put_mailbox(envelope(b"old%d" % i, ttl=10), quota=QUOTA)
    with pytest.raises(QuotaExceededError):
        await store.put_mailbox(envelope(b"new", at=NOW_MS + 9), quota=QUOTA)
    assert await store.put_mailbox(envelope(b"new", at=NOW_MS + 10), quota=QUOTA)


# -- DHT cache and peers ----------------------------------------------------------------


async def test_dht_cache_keeps_the_highest_seq_until_expiry(store: Store) -> None:
    rec = DhtRecord(key=b"/pk/a", value=b"v5", seq=5, expires_at=NOW_MS + 100)
    assert await store.put_dht(rec)
    assert not await store.put_dht(
        DhtRecord(key=b"/pk/a", value=b"v4", seq=4, expires_at=NOW_MS + 999)
    )
    assert await store.get_dht(b"/pk/a", now=NOW_MS) == rec
    newer = DhtRecord(key=b"/pk/a", value=b"v5b", seq=5, expires_at=NOW_MS + 200)
    assert await store.put_dht(newer)  # same seq refreshes
    await store.put_dht(DhtRecord(key=b"/pk/b", value=b"b", seq=0, expires_at=NOW_MS + 50))
    assert await store.get_dht(b"/pk/a", now=NOW_MS + 200) is None
    assert await store.get_dht(b"/pk/none", now=NOW_MS) is None
    assert await store.expire_dht(NOW_MS + 50) == 1
    assert (await store.statistics()).dht_records == 1


async def test_peers_round_trip_and_order(store: Store) -> None:
    await store.put_peer(peer("QmB", seen=5))
    await store.put_peer(peer("QmA", seen=5, source=PeerSource.MDNS))
    await store.put_peer(peer("QmC", seen=9, source=PeerSource.MANUAL))
    bare = Peer(peer_id="QmD", addrs=(), last_seen=1, source=PeerSource.DHT)
    await store.put_peer(bare)
    assert await store.get_peer("QmB") == peer("QmB", seen=5)
    assert await store.get_peer("QmD") == bare
    assert [p.peer_id for p in await store.list_peers()] == ["QmC", "QmA", "QmB", "QmD"]
    assert [p.peer_id for p in await store.list_peers(source=PeerSource.DHT)] == ["QmB", "QmD"]
    assert await store.delete_peer("QmB") is True
    assert await store.get_peer("QmB") is None
    assert await store.delete_peer("QmB") is False


async def test_statistics_counts_every_table(store: Store) -> None:
    await store.put_contact(contact(1))
    await store.put_contact(contact(2, ContactState.BLOCKED))
    await store.put_session(session(1, 2, b"s", at=1))
    await store.put_conversation(dm())
    await store.add_message(message(b"m"))
    await store.add_outbox(outbox(1))
    await store.put_mailbox(envelope(b"e", size=7), quota=QUOTA)
    await store.put_dht(DhtRecord(key=b"k", value=b"v", seq=1, expires_at=NOW_MS))
    await store.put_peer(peer("Qm", seen=1))
    stats = await store.statistics()
    assert (stats.contacts, stats.blocked, stats.sessions, stats.conversations) == (2, 1, 1, 1)
    assert (stats.messages, stats.outbox, stats.mailbox_items, stats.mailbox_bytes) == (1, 1, 1, 7)
    assert (stats.dht_records, stats.peers) == (1, 1)


# -- transactions -----------------------------------------------------------------------


async def _write_session_and_message(tx: Any, n: int) -> None:
    await tx.put_session(session(1, 2, b"s", at=n, pickle=b"state-%d" % n))
    await tx.add_message(message(b"m%d" % n))
    await tx.put_meta("replay", b"%d" % n)


async def test_transaction_commits_all_writes_together(store: Store) -> None:
    await store.put_conversation(dm())
    async with store.transaction() as tx:
        await _write_session_and_message(tx, 1)
        assert await tx.get_message(b"m1") is not None  # reads see the transaction
    got = await store.get_session(key(1), key(2), b"s")
    assert got is not None
    assert got.pickle == b"state-1"
    assert await store.get_message(b"m1") is not None
    assert await store.get_meta("replay") == b"1"


class Boom(Exception):
    pass


async def test_transaction_rolls_back_everything_on_error(store: Store) -> None:
    await store.put_conversation(dm())
    async with store.transaction() as tx:
        await _write_session_and_message(tx, 1)
    before = (await store.statistics(), await store.get_conversation("dm-1"))

    async def failing_unit_of_work() -> None:
        async with store.transaction() as tx:
            await _write_session_and_message(tx, 2)
            await tx.add_outbox(outbox(1))
            raise Boom

    with pytest.raises(Boom):
        await failing_unit_of_work()
    assert (await store.statistics(), await store.get_conversation("dm-1")) == before
    got = await store.get_session(key(1), key(2), b"s")
    assert got is not None
    assert got.pickle == b"state-1"
    assert await store.get_message(b"m2") is None
    assert await store.get_meta("replay") == b"1"
    # The seq counter rolled back too: the next message continues from 1.
    assert (await store.add_message(message(b"m3"))).message.seq == 2


async def test_cancelled_transaction_rolls_back(store: Store) -> None:
    await store.put_conversation(dm())
    with trio.CancelScope() as scope:
        async with store.transaction() as tx:
            await tx.add_message(message(b"m1"))
            scope.cancel()
            await tx.add_message(message(b"m2"))  # cancelled here
    assert scope.cancelled_caught
    assert await store.list_messages("dm-1") == []


async def test_a_failed_call_inside_a_transaction_leaves_the_rest(store: Store) -> None:
    await store.put_conversation(dm())
    async with store.transaction() as tx:
        await tx.add_message(message(b"kept"))
        with pytest.raises(NotFoundError):
            await tx.add_message(message(b"orphan", "no-such-conversation"))
        with pytest.raises(QuotaExceededError):
            await tx.put_mailbox(envelope(b"big", size=101), quota=QUOTA)
    assert [m.message_id for m in await store.list_messages("dm-1")] == [b"kept"]
    assert (await store.statistics()).mailbox_items == 0


async def test_tasks_sharing_a_transaction_take_turns(store: Store) -> None:
    await store.put_conversation(dm())
    async with store.transaction() as tx, trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(tx.add_message, message(b"m%d" % i))
    stored = await store.list_messages("dm-1")
    assert sorted(m.seq for m in stored) == list(range(1, 9))
    assert {m.message_id for m in stored} == {b"m%d" % i for i in range(8)}


async def test_transaction_object_is_dead_after_exit(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.put_meta("k", b"v")
    with pytest.raises(ClosedError):
        await tx.put_meta("k", b"w")
    assert await store.get_meta("k") == b"v"


async def test_store_call_inside_own_transaction_is_refused(store: Store) -> None:
    async def misuse() -> None:
        async with store.transaction() as tx:
            await tx.put_meta("k", b"v")
            await store.put_meta("k", b"w")

    with pytest.raises(LocalProtocolError):
        await misuse()
    assert await store.get_meta("k") is None


async def test_other_tasks_wait_for_the_transaction_and_are_not_part_of_it(store: Store) -> None:
    entered = trio.Event()
    release = trio.Event()
    order: list[str] = []

    async def unit_of_work() -> None:
        async with store.transaction() as tx:
            await tx.put_meta("a", b"tx")
            entered.set()
            await release.wait()
            order.append("tx-end")
            raise Boom

    async def in_transaction() -> None:
        with pytest.raises(Boom):
            await unit_of_work()

    async def outsider() -> None:
        await entered.wait()
        await store.put_meta("b", b"outsider")
        order.append("outsider-done")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(in_transaction)
        nursery.start_soon(outsider)
        await entered.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert order == []  # the outsider is waiting for the lock
        release.set()
    assert order == ["tx-end", "outsider-done"]
    assert await store.get_meta("a") is None
    assert await store.get_meta("b") == b"outsider"


# -- units of work (Store.atomically) ---------------------------------------------------


async def test_a_unit_of_work_commits_all_writes_and_returns_its_result(store: Store) -> None:
    await store.put_conversation(dm())

    async def work(tx: Transaction) -> int:
        await _write_session_and_message(tx, 1)
        stored = await tx.get_message(b"m1")  # reads see the unit's writes
        assert stored is not None
        return stored.seq

    assert await store.atomically(work) == 1
    got = await store.get_session(key(1), key(2), b"s")
    assert got is not None
    assert got.pickle == b"state-1"
    assert await store.get_meta("replay") == b"1"


async def test_a_unit_of_work_that_raises_changes_nothing(store: Store) -> None:
    await store.put_conversation(dm())
    before = await store.statistics()

    async def work(tx: Transaction) -> None:
        await _write_session_and_message(tx, 2)
        raise Boom

    with pytest.raises(Boom):
        await store.atomically(work)
    assert await store.statistics() == before
    assert (await store.add_message(message(b"m3"))).message.seq == 1


async def test_a_unit_of_work_may_catch_a_refusal_and_go_on(store: Store) -> None:
    await store.put_conversation(dm())

    async def work(tx: Transaction) -> None:
        await tx.add_message(message(b"kept"))
        with pytest.raises(NotFoundError):
            await tx.add_message(message(b"orphan", "no-such-conversation"))
        with pytest.raises(ValueError, match="account"):
            await tx.get_contact(b"short")

    await store.atomically(work)
    assert [m.message_id for m in await store.list_messages("dm-1")] == [b"kept"]


async def test_a_unit_of_work_that_suspends_is_refused_and_rolled_back(store: Store) -> None:
    async def work(tx: Transaction) -> None:
        await tx.put_meta("k", b"v")
        await trio.lowlevel.checkpoint()  # not the transaction: refused

    with pytest.raises((LocalProtocolError, RuntimeError)):
        await store.atomically(work)
    assert await store.get_meta("k") is None


async def test_a_unit_of_work_cannot_call_the_store_itself(store: Store) -> None:
    async def work(tx: Transaction) -> None:
        await tx.put_meta("k", b"v")
        await store.put_meta("k", b"w")

    with pytest.raises((LocalProtocolError, RuntimeError)):
        await store.atomically(work)
    assert await store.get_meta("k") is None


async def test_concurrent_units_of_work_each_get_their_own_outcome(store: Store) -> None:
    """Units that run together (SqliteStore commits them as one batch) still succeed or
    fail one by one: a failing unit takes none of the others with it."""
    await store.put_conversation(dm())
    outcomes: dict[int, object] = {}

    async def one(n: int) -> None:
        async def work(tx: Transaction) -> int:
            added = await tx.add_message(message(b"m%d" % n))
            if n % 3 == 0:
                raise Boom
            return added.message.seq

        try:
            outcomes[n] = await store.atomically(work)
        except Boom:
            outcomes[n] = "boom"

    async with trio.open_nursery() as nursery:
        for n in range(1, 10):
            nursery.start_soon(one, n)
    kept = {m.message_id: m.seq for m in await store.list_messages("dm-1")}
    assert set(kept) == {b"m%d" % n for n in range(1, 10) if n % 3}
    assert sorted(kept.values()) == list(range(1, 7))  # the failed ones took no seq
    for n, outcome in outcomes.items():
        assert outcome == ("boom" if n % 3 == 0 else kept[b"m%d" % n])


async def test_a_unit_of_work_inside_the_callers_own_transaction_is_refused(
    store: Store,
) -> None:
    async def work(tx: Transaction) -> None:
        await tx.put_meta("k", b"w")

    async def misuse() -> None:
        async with store.transaction() as tx:
            await tx.put_meta("k", b"v")
            await store.atomically(work)

    with pytest.raises(LocalProtocolError):
        await misuse()
    assert await store.get_meta("k") is None


async def test_the_transaction_of_a_unit_of_work_is_dead_after_it(store: Store) -> None:
    kept: list[Transaction] = []

    async def work(tx: Transaction) -> None:
        kept.append(tx)

    await store.atomically(work)
    with pytest.raises(ClosedError):
        await kept[0].put_meta("k", b"v")
    await store.aclose()
    with pytest.raises(ClosedError):
        await store.atomically(work)


# -- lifecycle and bad input ------------------------------------------------------------


async def test_close_is_idempotent_and_use_after_close_raises(store: Store) -> None:
    await store.put_meta("k", b"v")
    await store.aclose()
    await store.aclose()
    with pytest.raises(ClosedError):
        await store.get_meta("k")
    with pytest.raises(ClosedError):
        async with store.transaction():
            pass
    assert "closed" in repr(store)


BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], type[Exception]]] = [
    ("get_contact", (b"short",), {}, ValueError),
    ("get_contact", ("a" * 32,), {}, TypeError),
    ("is_blocked", (None,), {}, TypeError),
    ("put_meta", ("", b"v"), {}, ValueError),
    ("put_meta", ("k", "not bytes"), {}, TypeError),
    ("put_contact", ({"account": b"x"},), {}, TypeError),
    ("list_contacts", (), {"state": "blocked"}, TypeError),
    ("get_session", (key(1), key(2), b""), {}, ValueError),
    ("list_messages", ("dm-1",), {"limit": 0}, ValueError),
    ("list_messages", ("dm-1",), {"before_seq": -1}, ValueError),
    ("list_messages", ("dm-1",), {"after_seq": True}, TypeError),
    ("get_message", (b"x" * 65,), {}, ValueError),
    ("set_delivery", (b"m", "sent"), {}, TypeError),
    ("due_outbox", (-1,), {}, ValueError),
    ("reschedule_outbox", (1,), {"next_attempt_at": 2**63, "error": None}, ValueError),
    ("put_mailbox", (envelope(b"e"),), {"quota": None}, TypeError),
    ("fetch_mailbox", (b"r",), {"now": 1.5}, TypeError),
    ("delete_mailbox", ([b"ok", 7],), {}, TypeError),
    ("get_dht", (b"",), {"now": 0}, ValueError),
    ("list_peers", (), {"source": "dht"}, TypeError),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "error"), BAD_CALLS, ids=lambda v: str(v)[:20]
)
async def test_bad_arguments_raise_typed_errors(
    store: Store, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    before = await store.statistics()
    with pytest.raises(error):
        await getattr(store, method)(*args, **kwargs)
    assert await store.statistics() == before


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: Contact(
                account=b"x" * 31,
                display_name="",
                state=ContactState.ACCEPTED,
                created_at=0,
                updated_at=0,
            ),
            "account must be 32 bytes",
        ),
        (
            lambda: Conversation(
                conversation_id="c", kind=ConversationKind.DM, peer_account=None, last_activity=0
            ),
            "needs a peer_account",
        ),
        (lambda: message(b""), "message_id must be 1 to 64 bytes"),
        (
            lambda: MailboxItem(
                item_id=b"i",
                recipient_tag=b"r",
                sender_tag=b"s",
                blob=b"",
                stored_at=5,
                expires_at=5,
            ),
            "expires_at must be after stored_at",
        ),
        (
            lambda: MailboxQuota(
                max_items_per_sender=0, max_bytes_per_sender=1, max_items_total=1, max_bytes_total=1
            ),
            "max_items_per_sender",
        ),
        (
            lambda: Peer(peer_id="p", addrs=("",), last_seen=0, source=PeerSource.DHT),
            "addr must be",
        ),
        (
            lambda: SessionRecord(
                account=key(1), device=key(2), session_id=b"s", pickle=b"", updated_at=-1
            ),
            "updated_at",
        ),
    ],
)
def test_records_refuse_bad_values(build: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_secrets_stay_out_of_repr() -> None:
    secret = b"\x13SECRET-PICKLE-BYTES\x37"
    records = [
        session(1, 2, b"s", at=1, pickle=secret),
        message(b"m", body=secret),
        NewOutboxItem(destination_account=key(1), payload=secret, created_at=0),
        MailboxItem(
            item_id=b"i",
            recipient_tag=b"r",
            sender_tag=b"s",
            blob=secret,
            stored_at=0,
            expires_at=1,
        ),
        DhtRecord(key=b"k", value=secret, seq=0, expires_at=0),
    ]
    for record in records:
        text = repr(record)
        assert "SECRET" not in text, text
        assert type(record).__name__ in text


async def test_errors_do_not_echo_stored_bytes(store: Store) -> None:
    secret_tag = b"SECRET-TAG"
    await store.put_conversation(dm())
    errors: list[Exception] = []
    for call in (
        store.put_mailbox(envelope(b"SECRET-ID", sender=secret_tag, size=101), quota=QUOTA),
        store.add_message(message(b"SECRET-MID", "no-such-conversation")),
        store.set_delivery(b"SECRET-MID", DeliveryState.SENT),
        store.get_message(b"SECRET-MID" * 10),
    ):
        with pytest.raises((StorageError, NotFoundError, ValueError)) as info:
            await call
        errors.append(info.value)
    assert [type(e) for e in errors] == [
        QuotaExceededError,
        NotFoundError,
        NotFoundError,
        ValueError,
    ]
    for error in errors:
        assert "SECRET" not in str(error), error
