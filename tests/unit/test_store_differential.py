"""Differential test: random operation sequences give identical results on both stores.

The contract suite checks chosen cases; this one lets hypothesis look for any sequence
(messages, mailbox quotas, outbox retries, DHT seqs, group event batches and their row
ids, transactions that commit or roll back, calls that fail inside a transaction) on
which SqliteStore and MemoryStore differ in a return value, an error type, or their
final contents.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import p2pchat.storage
from p2pchat.errors import P2PChatError
from p2pchat.storage import (
    DeliveryState,
    DhtRecord,
    Direction,
    GroupStatus,
    MailboxQuota,
    MemoryStore,
    SqliteStore,
    Store,
    Transaction,
)
from tests.conftest import NOW_MS
from tests.unit.test_store_contract import dm, envelope, message, outbox
from tests.unit.test_store_groups import event, gid, group

QUOTA = MailboxQuota(
    max_items_per_sender=3, max_bytes_per_sender=40, max_items_total=5, max_bytes_total=80
)

ids = st.sampled_from([b"a", b"b", b"c", b"d"])
times = st.integers(0, 30).map(lambda t: NOW_MS + t)
conversations = st.sampled_from(["dm-1", "dm-2"])

simple_ops = st.one_of(
    st.tuples(st.just("conv"), conversations, times),
    st.tuples(st.just("msg"), ids, conversations, st.sampled_from(Direction), times),
    st.tuples(st.just("deliver"), ids, st.sampled_from(DeliveryState)),
    st.tuples(st.just("read"), conversations),
    st.tuples(st.just("page"), conversations, st.none() | st.integers(0, 5), st.integers(1, 3)),
    st.tuples(st.just("mbox"), ids, st.sampled_from([b"s1", b"s2"]), st.integers(1, 30), times),
    st.tuples(st.just("mbox-expire"), times),
    st.tuples(st.just("mbox-delete"), st.lists(ids, max_size=3)),
    st.tuples(st.just("mbox-fetch"), times),
    st.tuples(st.just("out"), st.integers(1, 3), times),
    st.tuples(st.just("out-retry"), st.integers(1, 6), times),
    st.tuples(st.just("out-remove"), st.integers(1, 6)),
    st.tuples(st.just("out-due"), times),
    st.tuples(st.just("dht"), ids, st.integers(0, 3), times),
    st.tuples(st.just("dht-get"), ids, times),
)
# Groups get their own sequences too: mixed in with everything else, a group is rarely
# created before events are added to it. Event batches are drawn most often (and from few
# ids, so that held ids recur): row ids are where the stores could drift apart.
group_events = st.tuples(
    st.just("grp-events"), st.integers(1, 3), st.lists(st.integers(0, 3), max_size=4)
)
group_ops = st.one_of(
    group_events,
    group_events,
    group_events,
    st.tuples(st.just("grp"), st.integers(1, 2), st.sampled_from(GroupStatus), times),
    st.tuples(st.just("grp-page"), st.integers(1, 2), st.integers(0, 12), st.integers(1, 3)),
    st.tuples(st.just("grp-key"), st.integers(1, 3), st.none() | st.just(b"sealed")),
    st.tuples(st.just("grp-delete"), st.integers(1, 3)),
)


def _sequences(simple: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[Any]:
    return st.lists(
        st.one_of(simple, st.tuples(st.just("tx"), st.lists(simple, max_size=5), st.booleans())),
        max_size=25,
    )


ops = _sequences(st.one_of(simple_ops, group_ops))


class Abort(Exception):
    pass


async def _apply(store: Transaction, op: tuple[Any, ...]) -> Any:
    kind, *args = op
    match kind:
        case "conv":
            return await store.put_conversation(dm(args[0], at=args[1]))
        case "msg":
            mid, cid, direction, at = args
            return await store.add_message(message(mid, cid, direction=direction, at=at))
        case "deliver":
            mid, state = args
            reason = "gave up" if state is DeliveryState.FAILED else None
            return await store.set_delivery(mid, state, reason=reason)
        case "read":
            return await store.mark_read(args[0])
        case "page":
            cid, before, limit = args
            return await store.list_messages(cid, before_seq=before, limit=limit)
        case "mbox":
            item, sender, size, at = args
            item = envelope(item, sender=sender, size=size, at=at, ttl=10)
            return await store.put_mailbox(item, quota=QUOTA)
        case "mbox-expire":
            return await store.expire_mailbox(args[0])
        case "mbox-delete":
            return await store.delete_mailbox(args[0])
        case "mbox-fetch":
            return await store.fetch_mailbox(b"r1", now=args[0])
        case "out":
            return await store.add_outbox(outbox(args[0], at=args[1]))
        case "out-retry":
            return await store.reschedule_outbox(args[0], next_attempt_at=args[1], error="x")
        case "out-remove":
            return await store.remove_outbox(args[0])
        case "out-due":
            return await store.due_outbox(args[0], limit=3)
        case "dht":
            key, seq, at = args
            record = DhtRecord(key=key, value=b"%d" % seq, seq=seq, expires_at=at)
            return await store.put_dht(record)
        case "dht-get":
            return await store.get_dht(args[0], now=args[1])
        case "grp":
            n, status, at = args
            return await store.put_group(group(n, status=status, joined=at))
        case "grp-events":
            n, events = args
            return await store.add_group_events(gid(n), [event(e) for e in events])
        case "grp-page":
            n, after, limit = args
            return await store.group_events(gid(n), after_rowid=after, limit=limit)
        case "grp-key":
            return await store.set_group_keyring(gid(args[0]), args[1])
        case "grp-delete":
            return await store.delete_group(gid(args[0]))
    raise AssertionError(kind)


async def _outcome(store: Transaction, op: tuple[Any, ...]) -> Any:
    try:
        return ("ok", await _apply(store, op))
    except P2PChatError as exc:
        return ("error", type(exc).__name__)


async def _run(store: Store, sequence: list[tuple[Any, ...]]) -> list[Any]:
    outcomes: list[Any] = []
    for op in sequence:
        if op[0] != "tx":
            outcomes.append(await _outcome(store, op))
            continue
        _, inner, abort = op
        try:
            async with store.transaction() as tx:
                outcomes.append([await _outcome(tx, each) for each in inner])
                if abort:
                    raise Abort
        except Abort:
            outcomes.append("aborted")
    return outcomes


async def _contents(store: Store) -> Any:
    return (
        await store.statistics(),
        await store.list_conversations(),
        [await store.list_messages(c, limit=1000) for c in ("dm-1", "dm-2")],
        await store.fetch_mailbox(b"r1", now=0, limit=1000),
        await store.due_outbox(2**62, limit=1000),
        [await store.get_dht(k, now=0) for k in (b"a", b"b", b"c", b"d")],
        await store.list_groups(),
        [await store.group_events(gid(n)) for n in (1, 2)],
    )


async def _agree(sequence: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with (
            await SqliteStore.open(Path(folder) / "store.db") as sqlite_store,
            MemoryStore() as memory_store,
        ):
            assert await _run(sqlite_store, sequence) == await _run(memory_store, sequence)
            assert await _contents(sqlite_store) == await _contents(memory_store)


@settings(max_examples=60)
@given(sequence=ops)
async def test_sqlite_and_memory_stores_agree(sequence: list[tuple[Any, ...]]) -> None:
    await _agree(sequence)


#: Both groups exist at the start, so most sequences reach their event histories.
GROUPS_EXIST = [("grp", n, GroupStatus.ACTIVE, NOW_MS) for n in (1, 2)]


@settings(max_examples=40)
@given(sequence=_sequences(group_ops))
async def test_stores_agree_on_groups(sequence: list[tuple[Any, ...]]) -> None:
    await _agree([*GROUPS_EXIST, *sequence])


def test_public_surface_resolves() -> None:
    for name in p2pchat.storage.__all__:
        assert getattr(p2pchat.storage, name) is not None, name
