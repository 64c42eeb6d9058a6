"""The outbox worker of direct messages (the sending side's delivery loop).

:class:`Outbox` is a base of :class:`~p2pchat.dm.service.DirectMessages`, which owns the
state (see that module's docstring for the guarantees): the worker encrypts what is
still plaintext, writes windows of ready frames per device, reads the acks, retries
with backoff, leaves frames in a mailbox when a peer stays away, and reports delivery.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable

import trio

from p2pchat_crypto.identity import Device
from p2pchat_crypto.sealed import Rng

from ..config import DeliveryConfig
from ..errors import (
    NetworkError,
    NotFoundError,
    ProtocolError,
    StorageError,
    WireError,
)
from ..events import DeliveryChanged
from ..identity.directory import Directory
from ..identity.peerid import peer_id_from_ed25519, peer_id_to_key
from ..net.base import FramedStream, Network
from ..protocol.dm_messages import (
    REFUSE_REASONS,
    DmAck,
    DmRefuse,
)
from ..protocol.envelope import decode_envelope
from ..protocol.limits import backoff_ms
from ..storage.base import Transaction
from ..storage.records import (
    DeliveryState,
    DeviceDelivery,
    Direction,
    OutboxItem,
)
from .encrypt import OUTBOX_KIND, Encrypting
from .receive import DM_PROTOCOL, MAX_DM_FRAME, OUTBOX_BATCH
from .streams import FrameCache, StreamPool, closing, reset_quietly

__all__ = ["OUTBOX_KIND", "Outbox"]

logger = logging.getLogger(__name__)

_OUTBOX_BATCH = OUTBOX_BATCH
#: Frames written to one device before waiting for their acks.
_SEND_WINDOW = 64
_POLL_S = 1.0


class _DeliveryFailed(Exception):
    """An attempt failed for a reason worth retrying (internal to the outbox loop)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Ready:
    """An outbox item with its frame, ready to go out."""

    item: OutboxItem
    frame: bytes = dataclasses.field(repr=False)
    oneway: bool


class Outbox(Encrypting):
    """The delivery loop of :class:`~p2pchat.dm.service.DirectMessages`."""

    _device: Device
    _network: Network
    _directory: Directory
    _config: DeliveryConfig
    _rng: Rng
    _jitter: random.Random
    _wakeup: trio.Event
    _reachable: set[str]
    _streams: StreamPool
    _frames: FrameCache
    _backoff_base: dict[int, int]
    _unsent: set[bytes | None]
    _announced: set[bytes | None]
    _sent_volatile: set[bytes | None]
    _waiting: dict[bytes, str]
    mailbox_deposit: Callable[[bytes, bytes | None, bytes], Awaitable[bool]] | None
    on_delivered: Callable[[list[bytes]], Awaitable[None]] | None

    async def catch_up(self) -> None:
        """Queue what new devices missed (:meth:`DirectMessages.catch_up`)."""
        raise NotImplementedError

    async def run_outbox(self) -> None:
        """The outbox worker: forever, deliver what is due, then wait for a reason to."""
        try:
            while True:
                self._wakeup = trio.Event()
                try:
                    await self._streams.close_idle()
                    await self._deliver_due()
                except* StorageError as failed:
                    # A full disk, say: what failed was not committed, so the items are
                    # still queued; the next round tries again (the node stays up).
                    self.stats["store_failures"] += 1
                    logger.warning("outbox: the store failed, retrying: %s", failed.exceptions[0])
                with trio.move_on_after(_POLL_S):
                    await self._wakeup.wait()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_POLL_S):
                await self._streams.aclose()

    async def _deliver_due(self) -> None:
        """Deliver, per destination, *every* waiting item once one of them is due (or
        its device just connected), oldest first.

        Items are retried with their own jittered delays; were only the due ones taken,
        a newer message could be encrypted and delivered before an older one. Order:
        ``created_at``, then encrypted items (whose ratchet order is fixed) before
        unencrypted ones, then item id (an encrypted item got a new id when encrypted,
        in order).
        """
        now = self._clock()
        due = await self._store.due_outbox(now, limit=_OUTBOX_BATCH)
        reachable, self._reachable = self._reachable, set()
        if not due and not reachable:
            return
        for peer in reachable:  # a new connection: a kept stream belongs to the old one
            with contextlib.suppress(ValueError):
                await self._streams.drop(peer_id_to_key(peer))
        # One queue per destination device (fan-out: an absent device must not hold up
        # the others), and one per account whose devices are still to be resolved.
        destinations = {(item.destination_account, item.destination_device) for item in due}
        waiting = await self._store.due_outbox(2**62, limit=_OUTBOX_BATCH)
        for item in waiting:
            device = item.destination_device
            if device is not None and peer_id_from_ed25519(device) in reachable:
                self._backoff_base[item.item_id] = item.attempts
                destinations.add((item.destination_account, device))
        items = {item.item_id: item for item in due}
        for item in waiting:
            if (item.destination_account, item.destination_device) in destinations:
                items.setdefault(item.item_id, item)
        by_destination: dict[tuple[bytes, bytes | None], list[OutboxItem]] = defaultdict(list)
        for item in sorted(items.values(), key=lambda i: (i.created_at, i.item_id)):
            by_destination[item.destination_account, item.destination_device].append(item)
        await self._refresh_targets({account for account, _ in by_destination})
        limiter = trio.CapacityLimiter(8)

        async def deliver(destination_items: list[OutboxItem]) -> None:
            async with limiter:
                await self._deliver_in_order(destination_items)

        async with trio.open_nursery() as nursery:
            for destination_items in by_destination.values():
                nursery.start_soon(deliver, destination_items)

    async def _refresh_targets(self, accounts: set[bytes]) -> None:
        """Look up again the device lists of ``accounts`` not looked up for a while (a
        device linked or revoked since); a revoked device is dropped."""
        for account in accounts:
            if not self.targets.stale(account):
                continue
            with trio.move_on_after(self._config.ack_timeout_ms / 1000):
                try:
                    _, revoked = await self.targets.resolve(account)
                except (NetworkError, NotFoundError):
                    continue
                for device in revoked:
                    await self.drop_device(account, device)
        await self.catch_up()

    async def _deliver_in_order(self, items: list[OutboxItem]) -> None:
        """One destination's items, oldest first; stop at the first failure (keeps order).

        Consecutive items for one device go out as a window (up to ``_SEND_WINDOW``):
        written on one stream without waiting, then acknowledged together (the receiver
        commits and acknowledges whatever it has read as one batch).
        """
        position = 0
        while position < len(items):
            try:
                run = await self._next_run(items, position)
            except _DeliveryFailed as exc:
                await self._retry_all(items[position:], str(exc))
                return
            position += len(run)
            failed = await self._deliver_run(run)
            if failed is not None:
                left, error = failed
                await self._retry_all(left + items[position:], error)
                return

    async def _retry_all(self, items: list[OutboxItem], error: str) -> None:
        for item in items:
            await self._retry_later(item, error)

    async def _ready(self, item: OutboxItem) -> _Ready:
        """The item with its frame, encrypting it first if the worker must."""
        cached = self._frames.take(item.item_id)
        if cached is not None and item.destination_device is not None:
            return _Ready(item=item, frame=cached, oneway=False)
        entry = self._keys.open_blob(OUTBOX_KIND, item.payload)
        assert isinstance(entry, dict)
        frame = entry.get("frame")
        if not isinstance(frame, bytes) or item.destination_device is None:
            try:
                item, frame = await self._encrypt(item, entry["pt"])
            except trio.TooSlowError:
                raise _DeliveryFailed("timed out") from None
            except (NetworkError, NotFoundError, ProtocolError) as exc:
                raise _DeliveryFailed(str(exc)) from exc
        return _Ready(item=item, frame=frame, oneway=bool(entry.get("oneway")))

    async def _next_run(self, items: list[OutboxItem], position: int) -> list[_Ready]:
        """``items[position]`` and the following items already encrypted for its device."""
        first = await self._ready(items[position])
        run = [first]
        if first.oneway:
            return run
        for item in items[position + 1 : position + _SEND_WINDOW]:
            if item.destination_device != first.item.destination_device:
                break
            ready = await self._ready(item)
            if ready.oneway:
                break
            run.append(ready)
        return run

    async def _deliver_run(self, run: list[_Ready]) -> tuple[list[OutboxItem], str] | None:
        """Deliver a run; on failure, the items left to retry (in order) and why."""
        device = run[0].item.destination_device
        assert device is not None
        pending = {ready.item.message_id: ready for ready in run}
        try:
            if run[0].oneway:
                await self._transmit_oneway(run[0].item, run[0].frame, device)
                self._backoff_base.pop(run[0].item.item_id, None)
            else:
                await self._transmit_window(run, device, pending)
            return None
        except trio.TooSlowError:
            error = "no delivery receipt in time"
        except (NetworkError, NotFoundError, ProtocolError) as exc:
            error = str(exc)
        left = [ready for ready in run if ready.item.message_id in pending]
        await self._persist_sent([ready.item for ready in left])
        for index, ready in enumerate(left):
            if not await self._leave_in_mailbox(ready.item, ready.frame):
                return [r.item for r in left[index:]], error
        return None

    async def _transmit_window(
        self,
        run: list[_Ready],
        device: bytes,
        pending: dict[bytes | None, _Ready],
    ) -> None:
        """Deliver ``run`` on a kept (or new) stream to ``device``; ``pending`` keeps what
        is not acknowledged yet (for the caller, if this raises). The stream is kept for
        the next delivery only after a clean exchange."""
        stream, reused = await self._streams.take(device)
        try:
            await self._exchange(stream, run, device, pending)
        except (NetworkError, ProtocolError):
            await reset_quietly(stream)
            if not reused or len(pending) < len(run):
                raise
            # A kept stream may have died with its connection while idle: once, on a
            # new stream (the receiver re-acknowledges anything it already has).
            stream, _ = await self._streams.take(device)
            try:
                await self._exchange(stream, run, device, pending)
            except BaseException:
                await reset_quietly(stream)
                raise
        except BaseException:
            await reset_quietly(stream)
            raise
        self._streams.put_back(device, stream)

    async def _exchange(
        self,
        stream: FramedStream,
        run: list[_Ready],
        device: bytes,
        pending: dict[bytes | None, _Ready],
    ) -> None:
        """Write every frame of ``run``, then read receipts until all are acknowledged;
        each receipt marks its messages delivered in one transaction."""
        timeout = self._config.ack_timeout_ms / 1000
        with trio.fail_after(timeout):  # the window in one write (one Noise message)
            await stream.write_frames([ready.frame for ready in run])
        await self._sent([ready.item for ready in run])
        account = run[0].item.destination_account
        while pending:
            with trio.fail_after(timeout):  # TooSlowError: no receipt in time
                reply = await stream.read_frame(MAX_DM_FRAME)
            if reply is None:
                raise NetworkError("the peer closed the stream without a receipt")
            envelope = decode_envelope(reply, max_size=MAX_DM_FRAME)
            if envelope.sender != device:
                raise WireError("wrong-sender", "receipt signed by another device")
            envelope.verify()
            ack = envelope.open()
            if not isinstance(ack, DmAck | DmRefuse):
                raise WireError("unexpected-kind", "expected a receipt for the messages sent")
            done = [pending.pop(i) for i in dict.fromkeys(ack.ids) if i in pending]
            if not done:
                continue
            settled: list[tuple[bytes | None, int | None]] = [
                (r.item.message_id, r.item.item_id) for r in done
            ]
            if isinstance(ack, DmRefuse):
                await self._refused(settled, ack.reason, account=account, device=device)
            else:
                await self._delivered(settled, account=account, device=device)

    async def _transmit_oneway(self, item: OutboxItem, frame: bytes, device: bytes) -> None:
        stream = await self._open(device)
        async with closing(stream):
            with trio.fail_after(self._config.ack_timeout_ms / 1000):
                await stream.write_frame(frame)
        await self._store.remove_outbox(item.item_id)

    async def _open(self, device: bytes) -> FramedStream:
        peer_id = peer_id_from_ed25519(device)
        self._network.protect(peer_id, "contact")  # kept when idle connections are trimmed
        if peer_id not in self._network.connected_peers():
            info = await self._directory.locate(device)
            addrs = info.addrs if info is not None else ()
            if not addrs:
                peer = await self._store.get_peer(peer_id)
                addrs = tuple(peer.addrs) if peer is not None else ()
            await self._network.connect(peer_id, addrs)
        return await self._network.open_stream(peer_id, DM_PROTOCOL)

    async def _leave_in_mailbox(self, item: OutboxItem, frame: bytes) -> bool:
        """Hook for store-and-forward (see :mod:`p2pchat.dm.mailbox`); False: not handled."""
        deposit = self.mailbox_deposit
        if deposit is None:
            return False
        try:
            stored = await deposit(item.destination_account, item.destination_device, frame)
        except (NetworkError, NotFoundError, ProtocolError) as exc:
            logger.debug("mailbox deposit failed: %s", exc)
            return False
        if stored:
            self._backoff_base.pop(item.item_id, None)
            recipient = item.destination_account != self._account.account_key
            async with self._store.transaction() as tx:
                await tx.remove_outbox(item.item_id)
                await self._device_state(tx, item, DeliveryState.SENT, None)
                if item.message_id is not None and recipient:
                    message = await tx.get_message(item.message_id)
                    if message is not None and message.state is DeliveryState.QUEUED:
                        await tx.set_delivery(item.message_id, DeliveryState.SENT)
            if item.message_id not in self._announced and recipient:
                self._emit_delivery(item.message_id, item.conversation_id, "sent")
            self._forget_sent(item.message_id)
        return stored

    async def _retry_later(self, item: OutboxItem, error: str) -> None:
        now = self._clock()
        attempts = max(1, item.attempts + 1 - self._backoff_base.get(item.item_id, 0))
        give_up = self._config.give_up_ms
        if item.destination_device is None:
            give_up = min(give_up, self._config.unknown_account_give_up_ms)
        if now - item.created_at >= give_up:
            await self._give_up(item, error)
            return
        delay = backoff_ms(
            attempts,
            initial=self._config.retry_initial_ms,
            maximum=self._config.retry_max_ms,
            jitter=self._jitter.uniform(0.8, 1.2),
        )
        if item.message_id is not None:
            self._waiting[item.message_id] = error[:500]
        # NotFoundError: delivered meanwhile (an ack can arrive on another stream).
        with contextlib.suppress(NotFoundError):
            await self._store.reschedule_outbox(
                item.item_id, next_attempt_at=now + delay, error=error[:500]
            )
        self.stats["retries"] += 1

    async def _give_up(self, item: OutboxItem, error: str) -> None:
        """``item`` will not be delivered: it fails on its device, and its message fails
        when no device of the recipient has it or may still get it."""
        self._backoff_base.pop(item.item_id, None)
        plaintext = self._is_plaintext(item)
        recipient = item.destination_account != self._account.account_key
        others = []
        if recipient and item.message_id is not None:
            others = [
                i
                for i in await self._store.due_outbox(2**62, limit=2**31)
                if i.message_id == item.message_id
                and i.item_id != item.item_id
                and i.destination_account == item.destination_account
            ]

        async def unit(tx: Transaction) -> bool:
            await tx.remove_outbox(item.item_id)
            await self._device_state(tx, item, DeliveryState.FAILED, error)
            if item.message_id is None or not recipient or others:
                return False
            message = await tx.get_message(item.message_id)
            if message is not None and message.state is DeliveryState.DELIVERED:
                return False
            await tx.set_delivery(item.message_id, DeliveryState.FAILED, reason=error)
            return True

        failed = await self._store.atomically(unit)
        if plaintext:
            self._plaintext_items[item.destination_account, item.destination_device] -= 1
        if failed or (item.message_id is None and recipient):
            self._forget_sent(item.message_id)
            self._emit_delivery(item.message_id, item.conversation_id, "failed", error)
            self.stats["failed"] += 1

    async def _device_state(
        self, tx: Transaction, item: OutboxItem, state: DeliveryState, reason: str | None
    ) -> None:
        """Record where ``item``'s message stands on its device (a message of ours)."""
        if item.message_id is None or item.destination_device is None:
            return
        if item.conversation_id is None:
            return  # node-to-node content, not shown
        await tx.set_device_delivery(
            DeviceDelivery(
                message_id=item.message_id,
                device=item.destination_device,
                state=state,
                reason=reason,
                updated_at=self._clock(),
            )
        )

    async def _sent(self, items: list[OutboxItem]) -> None:
        """Frames written: the ``sent`` event, without a commit per message.

        ``sent`` is not stored here (the ack normally follows within milliseconds and
        stores ``delivered``); it is stored when no ack comes (:meth:`_persist_sent`).
        A message not known to be ``queued`` (queued before a restart) takes the
        store's word, as before.
        """
        for item in items:
            message_id = item.message_id
            if message_id is None or message_id in self._announced:
                continue
            if message_id in self._unsent:
                self._unsent.discard(message_id)
                self._sent_volatile.add(message_id)
                self._emit_delivery(message_id, item.conversation_id, "sent")
            else:
                await self._mark(item, DeliveryState.SENT)
            self._announced.add(message_id)

    def _forget_sent(self, message_id: bytes | None) -> None:
        if message_id is not None:
            self._waiting.pop(message_id, None)
        self._unsent.discard(message_id)
        self._announced.discard(message_id)
        self._sent_volatile.discard(message_id)

    async def _persist_sent(self, items: list[OutboxItem]) -> None:
        """Store ``sent`` for written messages whose ack did not come (one commit)."""
        ids = [i.message_id for i in items if i.message_id in self._sent_volatile]
        if not ids:
            return

        async def unit(tx: Transaction) -> None:
            for message_id in ids:
                assert message_id is not None
                message = await tx.get_message(message_id)
                if message is not None and message.state is DeliveryState.QUEUED:
                    await tx.set_delivery(message_id, DeliveryState.SENT)

        await self._store.atomically(unit)
        self._sent_volatile.difference_update(ids)

    async def _mark(self, item: OutboxItem, state: DeliveryState) -> None:
        if item.message_id is None:
            return
        message = await self._store.get_message(item.message_id)
        if message is not None and message.state is DeliveryState.QUEUED:
            await self._store.set_delivery(item.message_id, state)
            self._emit_delivery(item.message_id, item.conversation_id, state.value)

    async def _delivered(
        self,
        receipts: list[tuple[bytes | None, int | None]],
        *,
        account: bytes,
        device: bytes,
    ) -> None:
        """Receipts from ``device`` (of ``account``) arrived for ``(message id, outbox item
        id)`` pairs: drop the outbox entries and mark the messages delivered on that
        device, and delivered (the summary) if it is a device of the recipient, all in
        one transaction."""
        await self._settle(receipts, DeliveryState.DELIVERED, None, account, device)

    async def _refused(
        self,
        receipts: list[tuple[bytes | None, int | None]],
        why: str,
        *,
        account: bytes,
        device: bytes,
    ) -> None:
        """A signed ``dm.refuse``: the recipient will never store these messages; they
        fail with its reason and are not retried."""
        reason = REFUSE_REASONS.get(why, f"the recipient refused it ({why[:64]})")
        await self._settle(receipts, DeliveryState.FAILED, reason, account, device)
        self.stats["refused"] += len(receipts)

    async def _settle(
        self,
        receipts: list[tuple[bytes | None, int | None]],
        state: DeliveryState,
        reason: str | None,
        account: bytes,
        device: bytes,
    ) -> None:
        recipient = account != self._account.account_key
        now = self._clock()

        async def unit(tx: Transaction) -> list[tuple[bytes, str]]:
            newly: list[tuple[bytes, str]] = []
            for message_id, item_id in receipts:
                if item_id is not None:
                    await tx.remove_outbox(item_id)
                if message_id is None:
                    continue
                message = await tx.get_message(message_id)
                if message is None or message.direction is not Direction.OUT:
                    continue
                await tx.set_device_delivery(
                    DeviceDelivery(
                        message_id=message_id,
                        device=device,
                        state=state,
                        reason=reason,
                        updated_at=now,
                    )
                )
                if (
                    recipient
                    and message.state is not DeliveryState.DELIVERED
                    and message.state is not state
                ):
                    await tx.set_delivery(message_id, state, reason=reason)
                    newly.append((message_id, message.conversation_id))
            return newly

        newly = await self._store.atomically(unit)
        for message_id, item_id in receipts:
            if item_id is not None:
                self._backoff_base.pop(item_id, None)
            if recipient:
                self._forget_sent(message_id)
        for message_id, conversation_id in newly:
            self._emit_delivery(message_id, conversation_id, state.value, reason)
            self.stats[state.value] += 1
        if newly and state is DeliveryState.DELIVERED and self.on_delivered is not None:
            await self.on_delivered([message_id for message_id, _ in newly])

    def _emit_delivery(
        self,
        message_id: bytes | None,
        conversation_id: str | None,
        state: str,
        reason: str | None = None,
    ) -> None:
        if message_id is not None and conversation_id is not None:
            self._events.publish(
                DeliveryChanged(
                    conversation_id=conversation_id,
                    message_id=message_id,
                    state=state,
                    reason=reason,
                )
            )
