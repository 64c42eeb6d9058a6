"""Direct messages: the ``/p2pchat/dm/1.0.0`` protocol driver (sending side here; the
receiving side is :mod:`p2pchat.dm.receive`).

Sending. ``send`` stores the message (``queued``) and its outbox entry in one
transaction. With a session to the account (and no older entry still waiting to be
encrypted) the message is encrypted right there, so that one commit holds the message,
the advanced session and the frame; otherwise (the first message: X3DH needs the
peer's DHT bundle) the outbox worker encrypts it, storing session and frame *before*
the ciphertext leaves the node. Either way a frame is encrypted exactly once, and
retried (never re-encrypted) with backoff until a signed ``dm.ack`` arrives
(``delivered``), a mailbox takes it (``sent``), or it gives up (``failed``): retrying
the same ciphertext keeps the receiver's skipped-key window small however long a peer
stays away.

Pipelining. The worker writes up to ``_SEND_WINDOW`` ready frames for one device on
one stream without waiting, then reads acks (the receiver acknowledges each batch it
committed with one ``dm.ack``) and marks each ack's messages delivered in one
transaction. ``sent`` is announced when the frames are written but stored only if
their ack does not come (it is a display state; the outbox entry is what makes the
message durable), so a delivered message costs the sender one commit for ``send``
and a share of one per ack, instead of four.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from nacl.signing import SigningKey

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.ratchet import Session, is_initial_message
from p2pchat_crypto.sealed import Rng

from ..config import DeliveryConfig
from ..errors import (
    LocalProtocolError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    WireError,
)
from ..events import DeliveryChanged, EventBus
from ..identity.directory import Directory
from ..identity.keystore import UnlockedIdentity
from ..identity.local_keys import LocalKeys
from ..identity.peerid import peer_id_from_ed25519, peer_id_to_key
from ..net.base import FramedStream, Network
from ..protocol.content import Content
from ..protocol.dm_messages import (
    ContactAccept,
    ContactDecline,
    DmAck,
    DmInit,
    DmMessage,
    DmPlaintext,
)
from ..protocol.envelope import decode_envelope, seal
from ..protocol.limits import PeerLimiter, backoff_ms
from ..storage.base import Store, Transaction
from ..storage.records import (
    ContactState,
    DeliveryState,
    Direction,
    Message,
    NewMessage,
    NewOutboxItem,
    OutboxItem,
)
from .receive import (
    DM_PROTOCOL,
    MAX_DM_FRAME,
    OUTBOX_BATCH,
    Receiving,
    dm_conversation_id,
)
from .sessions import SessionCache, SessionKey
from .streams import StreamPool, closing, reset_quietly

__all__ = ["DM_PROTOCOL", "MAX_DM_FRAME", "DirectMessages", "dm_conversation_id"]

logger = logging.getLogger(__name__)

_OUTBOX_KIND = "p2pchat/outbox-entry"
_OUTBOX_BATCH = OUTBOX_BATCH
#: Frames written to one device before waiting for their acks.
_SEND_WINDOW = 64
_T = TypeVar("_T")
_POLL_S = 1.0
#: A DM stream unused this long is closed (the receiver keeps a task per stream).
_STREAM_IDLE_S = 10.0


class _DeliveryFailed(Exception):
    """An attempt failed for a reason worth retrying (internal to the outbox loop)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Ready:
    """An outbox item with its frame, ready to go out."""

    item: OutboxItem
    frame: bytes = dataclasses.field(repr=False)
    oneway: bool


class DirectMessages(Receiving):
    """Sessions, outbox and acknowledgements for one node (see the module docstring)."""

    def __init__(
        self,
        *,
        identity: UnlockedIdentity,
        store: Store,
        network: Network,
        directory: Directory,
        local_keys: LocalKeys,
        events: EventBus,
        config: DeliveryConfig,
        clock: Callable[[], int],
        rng: Rng,
        jitter: random.Random,
        display_name: str | None = None,
    ) -> None:
        self._identity = identity
        self._account = identity.account
        self._device = identity.device
        self._signing_key = SigningKey(identity.device.signing_seed())
        self._store = store
        self._network = network
        self._directory = directory
        self._keys = local_keys
        self._events = events
        self._config = config
        self._clock = clock
        self._rng = rng
        self._jitter = jitter
        self._display_name = display_name
        self._limiter = PeerLimiter(rate=config.peer_rate, burst=config.peer_burst)
        self._wakeup = trio.Event()
        self._reachable: set[str] = set()
        self._streams = StreamPool(self._open, idle_s=_STREAM_IDLE_S)
        # Outbox item id -> its attempt count when its peer last (re)connected. A new
        # connection restarts the backoff: a restarting node connects (bootstrap) before
        # it registers its protocol handlers, so the attempt made on connection can fail,
        # and the next one must come after ``retry_initial_ms``, not after the delay
        # grown while the peer was away (up to ``retry_max_ms``).
        self._backoff_base: dict[int, int] = {}
        self._device_accounts: dict[bytes, bytes] = {}
        # Plaintext outbox entries per account (the worker must encrypt them first):
        # while any waits, ``send`` does not encrypt (see ``_queue``).
        self._plaintext_items: Counter[bytes] = Counter()
        # Sessions as last committed, used under the account locks (see dm_sessions).
        self._sessions = SessionCache()
        self._conversations: set[str] = set()
        # Our messages in the outbox, by what is known of ``sent`` (see ``_sent``):
        # stored ``queued`` and not announced; announced (``sent`` event published);
        # announced but not stored. Ids leave when delivered, failed or mailed.
        self._unsent: set[bytes | None] = set()
        self._announced: set[bytes | None] = set()
        self._sent_volatile: set[bytes | None] = set()
        self._account_locks: defaultdict[bytes, trio.Lock] = defaultdict(trio.Lock)
        # Serialises the receive path: sessions and the replay cache are read-modify-write.
        self._receive_lock = trio.Lock()
        self.stats: dict[str, int] = defaultdict(int)
        #: Set by the node when mailboxes are in use: ``await deposit(account, frame)``
        #: returns whether a mailbox took the frame.
        self.mailbox_deposit: Callable[[bytes, bytes], Awaitable[bool]] | None = None
        #: Content types consumed by the node itself (never shown, never stored as
        #: messages): ``type -> await handler(account, content)``.
        self.control_handlers: dict[str, Callable[[bytes, Content], Awaitable[None]]] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Index every session by device (contacts and group members alike: a member of a
        shared group who is not a contact still sends us sender keys) and start
        accepting streams."""
        for account, device in await self._store.list_session_peers():
            self._device_accounts[device] = account
        for item in await self._store.due_outbox(2**62, limit=2**31):
            if item.destination_device is None:
                self._plaintext_items[item.destination_account] += 1
        self._network.set_stream_handler(DM_PROTOCOL, self._handle_stream)

    def peer_reachable(self, peer_id: str) -> None:
        """A peer connected (or was found nearby): retry what waits for it now."""
        self._reachable.add(peer_id)
        self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    # -- sending --------------------------------------------------------------------------

    async def send(
        self, account: bytes, content: Content, *, reply_to: bytes | None = None
    ) -> Message:
        """Queue a message to ``account``; returns it in state ``queued``."""
        if account == self._account.account_key:
            raise LocalProtocolError("you cannot send a direct message to yourself")
        contact = await self._store.get_contact(account)
        if contact is not None and contact.state is ContactState.BLOCKED:
            raise PermissionDeniedError("this contact is blocked; unblock it to send")
        now = self._clock()
        message_id = self._rng(16)
        plaintext = DmPlaintext(id=message_id, ts=now, content=content, reply_to=reply_to)
        conversation_id = dm_conversation_id(account)

        async def record(tx: Transaction) -> Message:
            await self._ensure_conversation(tx, account, now)
            if contact is None:
                await tx.put_contact(self._new_contact(account, ContactState.REQUESTED_OUT, now))
            added = await tx.add_message(
                NewMessage(
                    conversation_id=conversation_id,
                    message_id=message_id,
                    sender_account=self._account.account_key,
                    sender_device=self._device.public_key,
                    direction=Direction.OUT,
                    content_type=content.type,
                    body=content.to_bytes(),
                    sent_at=now,
                    received_at=now,
                    state=DeliveryState.QUEUED,
                )
            )
            return added.message

        message = await self._queue(
            account, plaintext, conversation_id=conversation_id, now=now, record=record
        )
        self._unsent.add(message_id)
        self._events.publish(
            DeliveryChanged(conversation_id=conversation_id, message_id=message_id, state="queued")
        )
        self.stats["queued"] += 1
        self._wakeup.set()
        return message

    async def send_hidden(self, account: bytes, content: Content) -> None:
        """Queue node-to-node content (e.g. our mailbox tag): encrypted and retried like a
        message, but not stored in any conversation."""
        now = self._clock()
        plaintext = DmPlaintext(id=self._rng(16), ts=now, content=content)

        async def record(tx: Transaction) -> None:
            return None

        await self._queue(account, plaintext, conversation_id=None, now=now, record=record)
        self._wakeup.set()

    async def _queue(
        self,
        account: bytes,
        plaintext: DmPlaintext,
        *,
        conversation_id: str | None,
        now: int,
        record: Callable[[Transaction], Awaitable[_T]],
    ) -> _T:
        """Store what ``record`` writes and the outbox entry in one transaction.

        With a session, the message is encrypted here and the entry holds the frame: one
        commit per message, where encrypting in the outbox worker cost a second one.
        Not while an older entry to the account waits to be encrypted (its place in the
        ratchet comes first), nor without a session (X3DH needs the peer's bundle from
        the DHT): the worker encrypts those, in order.
        """
        async with self._account_locks[account]:
            sealed = None
            if self._plaintext_items[account] <= 0:
                sealed = await self._encrypt_now(account, plaintext, now)
            device = None
            try:
                async with self._store.transaction() as tx:
                    result = await record(tx)
                    if sealed is None:
                        body: dict[str, cbor.Value] = {"pt": plaintext.to_bytes()}
                    else:
                        key, session, frame = sealed
                        device = key[1]
                        await tx.put_session(self._session_record(key, session, now))
                        body = {"frame": frame}
                    await tx.add_outbox(
                        NewOutboxItem(
                            destination_account=account,
                            destination_device=device,
                            conversation_id=conversation_id,
                            message_id=plaintext.id,
                            payload=self._keys.seal_blob(_OUTBOX_KIND, body),
                            created_at=now,
                        )
                    )
            except BaseException:
                if sealed is not None:
                    self._sessions.forget(sealed[0])  # advanced, never stored
                raise
            if sealed is None:
                self._plaintext_items[account] += 1
            else:
                self._sessions.stored(sealed[0], sealed[1])
                self._device_accounts[sealed[0][1]] = account
        return result

    async def _encrypt_now(
        self, account: bytes, plaintext: DmPlaintext, now: int
    ) -> tuple[SessionKey, Session, bytes] | None:
        """With the most recent session to ``account``: (its key, session, frame)."""
        latest = await self._latest_session(account)
        if latest is None:
            return None
        key, session = latest
        try:
            wire = session.encrypt(plaintext.to_bytes(), self._rng)
        except CryptoError:
            self._sessions.forget(key)
            return None  # the worker will try (and report) it
        return key, session, self._dm_frame(plaintext.id, wire, now)

    async def _latest_session(self, account: bytes) -> tuple[SessionKey, Session] | None:
        """The session to encrypt with: the account's most recently stored one."""
        latest = self._sessions.latest(account)
        if latest is not None:
            return latest
        records = await self._store.list_sessions(account)
        if not records:
            return None
        key = (account, records[0].device, records[0].session_id)
        return key, self._sessions.get(key) or self._keys.open_session(records[0].pickle)

    def _dm_frame(self, message_id: bytes, wire: bytes, now: int) -> bytes:
        message: DmInit | DmMessage
        if is_initial_message(wire):
            message = DmInit(id=message_id, x3dh=wire)
        else:
            message = DmMessage(id=message_id, ratchet=wire)
        return seal(message, signing_key=self._signing_key, now=now)

    async def queue_frame(self, account: bytes, device: bytes, frame: bytes) -> None:
        """Queue a ready frame that expects no reply (a receipt for mail fetched from a
        mailbox): delivered when the device is reachable."""
        await self._store.add_outbox(
            NewOutboxItem(
                destination_account=account,
                destination_device=device,
                payload=self._keys.seal_blob(_OUTBOX_KIND, {"frame": frame, "oneway": True}),
                created_at=self._clock(),
            )
        )
        self._wakeup.set()

    async def queue_receipt(self, receipt: bytes, original: bytes) -> None:
        """Send the receipt for a frame that came through a mailbox back to its sender."""
        sender = decode_envelope(original, max_size=MAX_DM_FRAME).sender
        account = self._device_accounts.get(sender)
        if account is not None:
            await self.queue_frame(account, sender, receipt)

    async def send_control(self, account: bytes, message: ContactAccept | ContactDecline) -> None:
        """Best effort: tell the account's devices about a consent decision."""
        try:
            devices = await self._directory.devices_of(account)
        except NotFoundError:
            return
        frame = seal(message, signing_key=self._signing_key, now=self._clock())
        for cert in devices:
            try:
                stream = await self._open(cert.device_key)
                async with closing(stream):
                    await stream.write_frame(frame)
            except (NetworkError, ProtocolError) as exc:
                logger.debug("could not deliver %s: %s", type(message).__name__, exc)

    async def run_outbox(self) -> None:
        """The outbox worker: forever, deliver what is due, then wait for a reason to."""
        try:
            while True:
                self._wakeup = trio.Event()
                await self._streams.close_idle()
                await self._deliver_due()
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
        accounts = {item.destination_account for item in due}
        waiting = await self._store.due_outbox(2**62, limit=_OUTBOX_BATCH)
        for item in waiting:
            device = item.destination_device
            if device is not None and peer_id_from_ed25519(device) in reachable:
                self._backoff_base[item.item_id] = item.attempts
                accounts.add(item.destination_account)
        items = {item.item_id: item for item in due}
        for item in waiting:
            if item.destination_account in accounts:
                items.setdefault(item.item_id, item)
        by_account: dict[bytes, list[OutboxItem]] = defaultdict(list)
        for item in sorted(
            items.values(),
            key=lambda i: (i.created_at, i.destination_device is None, i.item_id),
        ):
            by_account[item.destination_account].append(item)
        limiter = trio.CapacityLimiter(8)

        async def deliver(account_items: list[OutboxItem]) -> None:
            async with limiter:
                await self._deliver_in_order(account_items)

        async with trio.open_nursery() as nursery:
            for account_items in by_account.values():
                nursery.start_soon(deliver, account_items)

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
        entry = self._keys.open_blob(_OUTBOX_KIND, item.payload)
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
        for ready in run:
            with trio.fail_after(timeout):
                await stream.write_frame(ready.frame)
        await self._sent([ready.item for ready in run])
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
            if not isinstance(ack, DmAck):
                raise WireError("unexpected-kind", "expected a receipt for the messages sent")
            done = [pending.pop(i) for i in dict.fromkeys(ack.ids) if i in pending]
            if done:
                await self._delivered([(r.item.message_id, r.item.item_id) for r in done])

    async def _encrypt(self, item: OutboxItem, plaintext: bytes) -> tuple[OutboxItem, bytes]:
        """Encrypt once; store session and frame together before anything is sent."""
        account = item.destination_account
        async with self._account_locks[account]:
            now = self._clock()
            latest = await self._latest_session(account)
            try:
                if latest is not None:
                    (_, device, _), session = latest
                    wire = session.encrypt(plaintext, self._rng)
                else:
                    bundle = await self._directory.bundle_of_account(account)
                    session, initial = Session.initiate(
                        self._account,
                        bundle,
                        self._rng,
                        now=now,
                        device=self._device,
                        plaintext=plaintext,
                        their_account_key=account,
                    )
                    wire = initial.encode()
                    device = bundle.device_certificate.device_key
            except CryptoError as exc:
                raise NotFoundError(f"cannot start an encrypted session: {exc}") from exc
            assert item.message_id is not None
            frame = self._dm_frame(item.message_id, wire, now)
            key = (account, device, session.session_id)
            try:
                async with self._store.transaction() as tx:
                    await tx.put_session(self._session_record(key, session, now))
                    await tx.remove_outbox(item.item_id)
                    new_item = await tx.add_outbox(
                        NewOutboxItem(
                            destination_account=account,
                            destination_device=device,
                            conversation_id=item.conversation_id,
                            message_id=item.message_id,
                            payload=self._keys.seal_blob(_OUTBOX_KIND, {"frame": frame}),
                            created_at=item.created_at,
                        )
                    )
            except BaseException:
                self._sessions.forget(key)
                raise
            self._sessions.stored(key, session)
            self._device_accounts[device] = account
            self._backoff_base.pop(item.item_id, None)
            self._plaintext_items[account] -= 1
            return new_item, frame

    async def _transmit_oneway(self, item: OutboxItem, frame: bytes, device: bytes) -> None:
        stream = await self._open(device)
        async with closing(stream):
            with trio.fail_after(self._config.ack_timeout_ms / 1000):
                await stream.write_frame(frame)
        await self._store.remove_outbox(item.item_id)

    async def _open(self, device: bytes) -> FramedStream:
        peer_id = peer_id_from_ed25519(device)
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
            stored = await deposit(item.destination_account, frame)
        except (NetworkError, NotFoundError, ProtocolError) as exc:
            logger.debug("mailbox deposit failed: %s", exc)
            return False
        if stored:
            self._backoff_base.pop(item.item_id, None)
            async with self._store.transaction() as tx:
                await tx.remove_outbox(item.item_id)
                if item.message_id is not None:
                    await tx.set_delivery(item.message_id, DeliveryState.SENT)
            if item.message_id not in self._announced:
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
            self._backoff_base.pop(item.item_id, None)
            async with self._store.transaction() as tx:
                await tx.remove_outbox(item.item_id)
                if item.message_id is not None:
                    await tx.set_delivery(item.message_id, DeliveryState.FAILED, reason=error)
            if item.destination_device is None:
                self._plaintext_items[item.destination_account] -= 1
            self._forget_sent(item.message_id)
            self._emit_delivery(item.message_id, item.conversation_id, "failed", error)
            self.stats["failed"] += 1
            return
        delay = backoff_ms(
            attempts,
            initial=self._config.retry_initial_ms,
            maximum=self._config.retry_max_ms,
            jitter=self._jitter.uniform(0.8, 1.2),
        )
        # NotFoundError: delivered meanwhile (an ack can arrive on another stream).
        with contextlib.suppress(NotFoundError):
            await self._store.reschedule_outbox(
                item.item_id, next_attempt_at=now + delay, error=error[:500]
            )
        self.stats["retries"] += 1

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
        self._unsent.discard(message_id)
        self._announced.discard(message_id)
        self._sent_volatile.discard(message_id)

    async def _persist_sent(self, items: list[OutboxItem]) -> None:
        """Store ``sent`` for written messages whose ack did not come (one commit)."""
        ids = [i.message_id for i in items if i.message_id in self._sent_volatile]
        if not ids:
            return
        async with self._store.transaction() as tx:
            for message_id in ids:
                assert message_id is not None
                message = await tx.get_message(message_id)
                if message is not None and message.state is DeliveryState.QUEUED:
                    await tx.set_delivery(message_id, DeliveryState.SENT)
        self._sent_volatile.difference_update(ids)

    async def _mark(self, item: OutboxItem, state: DeliveryState) -> None:
        if item.message_id is None:
            return
        message = await self._store.get_message(item.message_id)
        if message is not None and message.state is DeliveryState.QUEUED:
            await self._store.set_delivery(item.message_id, state)
            self._emit_delivery(item.message_id, item.conversation_id, state.value)

    async def _delivered(self, receipts: list[tuple[bytes | None, int | None]]) -> None:
        """Receipts arrived for ``(message id, outbox item id)`` pairs: drop the outbox
        entries and mark the stored messages delivered, all in one transaction."""
        newly: list[tuple[bytes, str]] = []
        async with self._store.transaction() as tx:
            for message_id, item_id in receipts:
                if item_id is not None:
                    await tx.remove_outbox(item_id)
                if message_id is None:
                    continue
                message = await tx.get_message(message_id)
                if (
                    message is not None
                    and message.direction is Direction.OUT
                    and message.state is not DeliveryState.DELIVERED
                ):
                    await tx.set_delivery(message_id, DeliveryState.DELIVERED)
                    newly.append((message_id, message.conversation_id))
        for message_id, item_id in receipts:
            if item_id is not None:
                self._backoff_base.pop(item_id, None)
            self._forget_sent(message_id)
        for message_id, conversation_id in newly:
            self._emit_delivery(message_id, conversation_id, "delivered")
            self.stats["delivered"] += 1

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
