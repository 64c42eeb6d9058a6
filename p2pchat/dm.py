"""Direct messages: the ``/p2pchat/dm/1.0.0`` protocol driver.

Sending. ``send`` stores the message (``queued``) and an outbox entry holding its sealed
plaintext in one transaction, then wakes the outbox worker. The worker encrypts an entry
exactly once (X3DH from the peer's DHT bundle for the first message, then the Double
Ratchet), storing the new session pickle *before* the ciphertext leaves the node, and
then retries the same frame with backoff until a signed ``dm.ack`` arrives
(``delivered``), a mailbox takes it (``sent``), or it gives up (``failed``).
Retrying the same ciphertext (never re-encrypting) keeps the receiver's skipped-key
window small however long a peer stays away.

Receiving. Per remote peer, a token bucket runs before any signature check; blocked
accounts are dropped before any decryption. A frame is decrypted, then the session
pickle, the message (deduplicated by id) and the contact are stored in one
transaction, and only then is the ack sent: an acknowledged message is durable.
A message already stored is re-acknowledged without being shown again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable

import trio
from nacl.signing import SigningKey

from p2pchat_crypto.errors import (
    CryptoError,
    DuplicateMessageError,
)
from p2pchat_crypto.identity import fingerprint_of
from p2pchat_crypto.ratchet import Session, is_initial_message
from p2pchat_crypto.sealed import Rng
from p2pchat_crypto.x3dh import InitialMessage

from .config import DeliveryConfig
from .directory import Directory
from .errors import (
    LocalProtocolError,
    NetworkError,
    NotFoundError,
    P2PChatError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    WireError,
)
from .events import (
    ContactChanged,
    ContactRequestReceived,
    DeliveryChanged,
    EventBus,
    MessageReceived,
)
from .keystore import UnlockedIdentity
from .local_keys import LocalKeys
from .net.base import FramedStream, Network
from .peerid import peer_id_from_ed25519, peer_id_to_key
from .protocol.content import Content
from .protocol.dm_messages import (
    ContactAccept,
    ContactDecline,
    ContactRequest,
    DmAck,
    DmInit,
    DmMessage,
    DmPlaintext,
)
from .protocol.envelope import Envelope, decode_envelope, seal
from .protocol.limits import PeerLimiter, backoff_ms
from .storage.base import Store, Transaction
from .storage.records import (
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    DeliveryState,
    Direction,
    Message,
    NewMessage,
    NewOutboxItem,
    OutboxItem,
    SessionRecord,
)

__all__ = ["DM_PROTOCOL", "MAX_DM_FRAME", "DirectMessages", "dm_conversation_id"]

logger = logging.getLogger(__name__)

DM_PROTOCOL = "/p2pchat/dm/1.0.0"
#: Cap on one DM frame (a message is at most 16 KiB of text plus crypto overhead).
MAX_DM_FRAME = 256 * 1024
_OUTBOX_KIND = "p2pchat/outbox-entry"
_OUTBOX_BATCH = 200
_POLL_S = 1.0


def dm_conversation_id(account: bytes) -> str:
    return "dm:" + account.hex()


class _DeliveryFailed(Exception):
    """An attempt failed for a reason worth retrying (internal to the outbox loop)."""


class DirectMessages:
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
        # Outbox item id -> its attempt count when its peer last (re)connected. A new
        # connection restarts the backoff: a restarting node connects (bootstrap) before
        # it registers its protocol handlers, so the attempt made on connection can fail,
        # and the next one must come after ``retry_initial_ms``, not after the delay
        # grown while the peer was away (up to ``retry_max_ms``).
        self._backoff_base: dict[int, int] = {}
        self._device_accounts: dict[bytes, bytes] = {}
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
        """Index known sessions by device and start accepting streams."""
        for contact in await self._store.list_contacts():
            for record in await self._store.list_sessions(contact.account):
                self._device_accounts[record.device] = contact.account
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
        async with self._store.transaction() as tx:
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
            await tx.add_outbox(
                NewOutboxItem(
                    destination_account=account,
                    conversation_id=conversation_id,
                    message_id=message_id,
                    payload=self._keys.seal_blob(_OUTBOX_KIND, {"pt": plaintext.to_bytes()}),
                    created_at=now,
                )
            )
        self._events.publish(
            DeliveryChanged(conversation_id=conversation_id, message_id=message_id, state="queued")
        )
        self.stats["queued"] += 1
        self._wakeup.set()
        return added.message

    async def send_hidden(self, account: bytes, content: Content) -> None:
        """Queue node-to-node content (e.g. our mailbox tag): encrypted and retried like a
        message, but not stored in any conversation."""
        now = self._clock()
        message_id = self._rng(16)
        plaintext = DmPlaintext(id=message_id, ts=now, content=content)
        await self._store.add_outbox(
            NewOutboxItem(
                destination_account=account,
                message_id=message_id,
                payload=self._keys.seal_blob(_OUTBOX_KIND, {"pt": plaintext.to_bytes()}),
                created_at=now,
            )
        )
        self._wakeup.set()

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
                async with _closing(stream):
                    await stream.write_frame(frame)
            except (NetworkError, ProtocolError) as exc:
                logger.debug("could not deliver %s: %s", type(message).__name__, exc)

    async def run_outbox(self) -> None:
        """The outbox worker: forever, deliver what is due, then wait for a reason to."""
        while True:
            self._wakeup = trio.Event()
            await self._deliver_due()
            with trio.move_on_after(_POLL_S):
                await self._wakeup.wait()

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
        """One destination's items, oldest first; stop at the first failure (keeps order)."""
        streams = _Streams(self._open)
        try:
            for index, item in enumerate(items):
                try:
                    await self._attempt(item, streams)
                except _DeliveryFailed as exc:
                    for later in items[index:]:
                        await self._retry_later(later, str(exc))
                    return
        finally:
            await streams.aclose()

    async def _attempt(self, item: OutboxItem, streams: _Streams) -> None:
        entry = self._keys.open_blob(_OUTBOX_KIND, item.payload)
        assert isinstance(entry, dict)
        frame = entry.get("frame")
        try:
            if not isinstance(frame, bytes) or item.destination_device is None:
                item, frame = await self._encrypt(item, entry["pt"])
            assert item.destination_device is not None
            if entry.get("oneway"):
                await self._transmit_oneway(item, frame, item.destination_device)
                self._backoff_base.pop(item.item_id, None)
            else:
                await self._transmit(item, frame, item.destination_device, streams)
        except trio.TooSlowError:
            raise _DeliveryFailed("timed out") from None
        except (NetworkError, NotFoundError, ProtocolError) as exc:
            if isinstance(frame, bytes) and await self._leave_in_mailbox(item, frame):
                return
            raise _DeliveryFailed(str(exc)) from exc

    async def _encrypt(self, item: OutboxItem, plaintext: bytes) -> tuple[OutboxItem, bytes]:
        """Encrypt once; store session and frame together before anything is sent."""
        account = item.destination_account
        async with self._account_locks[account]:
            now = self._clock()
            records = await self._store.list_sessions(account)
            try:
                if records:
                    record = records[0]
                    session = self._keys.open_session(record.pickle)
                    wire = session.encrypt(plaintext, self._rng)
                    device = record.device
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
            message: DmInit | DmMessage
            if is_initial_message(wire):
                message = DmInit(id=item.message_id, x3dh=wire)
            else:
                message = DmMessage(id=item.message_id, ratchet=wire)
            frame = seal(message, signing_key=self._signing_key, now=now)
            async with self._store.transaction() as tx:
                await tx.put_session(self._session_record(account, device, session, now))
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
            self._device_accounts[device] = account
            self._backoff_base.pop(item.item_id, None)
            return new_item, frame

    async def _transmit(
        self, item: OutboxItem, frame: bytes, device: bytes, streams: _Streams
    ) -> None:
        stream = await streams.take(device)
        try:
            try:
                with trio.fail_after(self._config.ack_timeout_ms / 1000):
                    await stream.write_frame(frame)
                    await self._mark(item, DeliveryState.SENT)
                    reply = await stream.read_frame(MAX_DM_FRAME)
            except trio.TooSlowError:
                raise NetworkError("no delivery receipt in time") from None
            if reply is None:
                raise NetworkError("the peer closed the stream without a receipt")
            envelope = decode_envelope(reply, max_size=MAX_DM_FRAME)
            if envelope.sender != device:
                raise WireError("wrong-sender", "receipt signed by another device")
            envelope.verify()
            ack = envelope.open()
            if not isinstance(ack, DmAck) or item.message_id not in ack.ids:
                raise WireError("unexpected-kind", "expected a receipt for the message sent")
        except BaseException:
            await _reset_quietly(stream)
            raise
        streams.put_back(device, stream)
        await self._delivered(item.message_id, item.item_id)

    async def _transmit_oneway(self, item: OutboxItem, frame: bytes, device: bytes) -> None:
        stream = await self._open(device)
        async with _closing(stream):
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
        """Hook for store-and-forward (see :mod:`p2pchat.mailbox`); False: not handled."""
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
            self._emit_delivery(item.message_id, item.conversation_id, "sent")
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

    async def _mark(self, item: OutboxItem, state: DeliveryState) -> None:
        if item.message_id is None:
            return
        message = await self._store.get_message(item.message_id)
        if message is not None and message.state is DeliveryState.QUEUED:
            await self._store.set_delivery(item.message_id, state)
            self._emit_delivery(item.message_id, item.conversation_id, state.value)

    async def _delivered(self, message_id: bytes | None, item_id: int | None) -> None:
        """A receipt arrived: drop the outbox entry, mark the message (if one is stored)."""
        if item_id is not None:
            self._backoff_base.pop(item_id, None)
        message = None if message_id is None else await self._store.get_message(message_id)
        newly = (
            message is not None
            and message.direction is Direction.OUT
            and message.state is not DeliveryState.DELIVERED
        )
        async with self._store.transaction() as tx:
            if newly:
                assert message_id is not None
                await tx.set_delivery(message_id, DeliveryState.DELIVERED)
            if item_id is not None:
                await tx.remove_outbox(item_id)
        if newly:
            assert message is not None
            self._emit_delivery(message_id, message.conversation_id, "delivered")
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

    # -- receiving ------------------------------------------------------------------------

    async def _handle_stream(self, stream: FramedStream) -> None:
        peer_id = stream.remote_peer
        try:
            device = peer_id_to_key(peer_id)
        except ValueError:
            await stream.reset()
            return
        while True:
            frame = await stream.read_frame(MAX_DM_FRAME)
            if frame is None:
                return
            try:
                reply = await self.receive_frame(frame, device=device, peer_id=peer_id)
            except RateLimitedError:
                self.stats["rate_limited"] += 1
                await stream.reset()
                return
            except (ProtocolError, PermissionDeniedError) as exc:
                self.stats["rejected"] += 1
                logger.info("dropped a frame from %s: %s", peer_id, exc)
                await stream.reset()
                return
            if reply is not None:
                await stream.write_frame(reply)

    async def receive_frame(
        self, frame: bytes, *, device: bytes | None, peer_id: str
    ) -> bytes | None:
        """Process one inbound frame; return the reply frame, if any.

        ``device`` is the transport-authenticated sender (the stream's peer); ``None`` for
        a frame fetched from a mailbox, which only its envelope signature authenticates.

        Raises :class:`RateLimitedError`, :class:`ProtocolError` (bad frame, signature or
        ciphertext) or :class:`PermissionDeniedError` (blocked sender).
        """
        if not self._limiter.allow(peer_id, self._clock()):
            raise RateLimitedError("too many frames from this peer")
        envelope = decode_envelope(frame, max_size=MAX_DM_FRAME)
        if device is None:
            device = envelope.sender
        elif envelope.sender != device:
            raise WireError("wrong-sender", "envelope sender is not the connected device")
        known_account = self._device_accounts.get(device)
        if known_account is not None and await self._store.is_blocked(known_account):
            raise PermissionDeniedError("sender is blocked")
        envelope.verify()
        message = envelope.open()
        self.stats["frames_in"] += 1
        if isinstance(message, DmInit | DmMessage):
            return await self._receive_message(envelope, message)
        if isinstance(message, DmAck):
            for message_id in message.ids:
                await self._acknowledged(message_id, device)
            return None
        if isinstance(message, ContactAccept | ContactDecline | ContactRequest):
            await self._receive_contact_control(device, message)
            return None
        raise WireError("unexpected-kind", f"{envelope.kind} is not used on this protocol")

    async def _acknowledged(self, message_id: bytes, device: bytes) -> None:
        """A receipt: only a device of the recipient account may confirm a message."""
        account = self._device_accounts.get(device)
        if account is None:
            return
        waiting = await self._store.due_outbox(2**62, limit=_OUTBOX_BATCH)
        item = next((i for i in waiting if i.message_id == message_id), None)
        if item is not None and item.destination_account != account:
            return
        message = await self._store.get_message(message_id)
        if message is not None and message.conversation_id != dm_conversation_id(account):
            return
        await self._delivered(message_id, None if item is None else item.item_id)

    async def _receive_message(self, envelope: Envelope, message: DmInit | DmMessage) -> bytes:
        async with self._receive_lock:
            return await self._receive_message_locked(envelope, message)

    async def _receive_message_locked(
        self, envelope: Envelope, message: DmInit | DmMessage
    ) -> bytes:
        device = envelope.sender
        now = self._clock()
        stored = await self._store.get_message(message.id)
        if stored is not None and stored.direction is Direction.IN:
            self.stats["duplicates"] += 1
            return self._ack(message.id)
        replay_changed = False
        try:
            if isinstance(message, DmInit):
                initial = InitialMessage.decode(message.x3dh)
                account = initial.initiator.account_key
                if initial.initiator_device is None or (
                    initial.initiator_device.device_key != device
                ):
                    raise WireError("wrong-sender", "initial message names another device")
                if await self._store.is_blocked(account):
                    raise PermissionDeniedError("sender is blocked")
                existing = await self._store.get_session(account, device, initial.session_id)
                if existing is not None:
                    session = self._keys.open_session(existing.pickle)
                    plaintext = session.decrypt(message.x3dh)
                else:
                    session, plaintext = Session.respond(
                        self._account,
                        self._keys.prekeys,
                        initial,
                        self._keys.replay_cache,
                        now=now,
                    )
                    replay_changed = True
            else:
                found = self._device_accounts.get(device)
                if found is None:
                    raise WireError("unknown-session", "no session with this device")
                account = found
                session, plaintext = await self._decrypt_with_any(account, device, message)
        except DuplicateMessageError:
            # The message key was used by a decryption that committed (state changes only
            # on success, and the session is stored with the message): we have it.
            self.stats["duplicates"] += 1
            return self._ack(message.id)
        except CryptoError as exc:
            raise WireError("undecryptable", type(exc).__name__) from None
        content_plain = DmPlaintext.from_bytes(plaintext, max_size=len(plaintext) or 1)
        if content_plain.id != message.id:
            raise WireError("id-mismatch", "encrypted id differs from the envelope's")
        return await self._store_received(
            account, device, session, content_plain, now=now, replay_changed=replay_changed
        )

    async def _decrypt_with_any(
        self, account: bytes, device: bytes, message: DmMessage
    ) -> tuple[Session, bytes]:
        """Try the device's sessions, most recent first (headers are encrypted)."""
        last: CryptoError | None = None
        for record in await self._store.list_sessions(account, device=device):
            session = self._keys.open_session(record.pickle)
            try:
                return session, session.decrypt(message.ratchet)
            except DuplicateMessageError:
                raise
            except CryptoError as exc:
                last = exc
        raise last or WireError("unknown-session", "no session with this device")

    async def _store_received(
        self,
        account: bytes,
        device: bytes,
        session: Session,
        plain: DmPlaintext,
        *,
        now: int,
        replay_changed: bool,
    ) -> bytes:
        conversation_id = dm_conversation_id(account)
        contact = await self._store.get_contact(account)
        handler = self.control_handlers.get(plain.content.type)
        if handler is not None:
            async with self._store.transaction() as tx:
                await tx.put_session(self._session_record(account, device, session, now))
                if replay_changed:
                    await self._keys.save_replay_cache(tx)
            self._device_accounts[device] = account
            if contact is None or contact.state is not ContactState.BLOCKED:
                await handler(account, plain.content)
                self.stats["control"] += 1
            return self._ack(plain.id)
        new_request = contact is None
        is_request = new_request or (
            contact is not None and contact.state is ContactState.REQUESTED_IN
        )
        declined = contact is not None and contact.state is ContactState.DECLINED
        async with self._store.transaction() as tx:
            await tx.put_session(self._session_record(account, device, session, now))
            if replay_changed:
                await self._keys.save_replay_cache(tx)
            if new_request:
                contact = self._new_contact(account, ContactState.REQUESTED_IN, now)
                await tx.put_contact(contact)
            elif contact is not None and contact.state is ContactState.REQUESTED_OUT:
                # They answered our first message: consent both ways.
                await tx.put_contact(_with_state(contact, ContactState.ACCEPTED, now))
            added = None
            if not declined:
                await self._ensure_conversation(tx, account, now)
                added = await tx.add_message(
                    NewMessage(
                        conversation_id=conversation_id,
                        message_id=plain.id,
                        sender_account=account,
                        sender_device=device,
                        direction=Direction.IN,
                        content_type=plain.content.type,
                        body=plain.content.to_bytes(),
                        sent_at=plain.ts,
                        received_at=now,
                        state=DeliveryState.DELIVERED,
                    )
                )
        # Committed: only now may the sender learn that we have it.
        self._device_accounts[device] = account
        self.stats["received"] += 1
        if new_request:
            self._events.publish(
                ContactRequestReceived(account=account, fingerprint=fingerprint_of(account))
            )
        if added is not None and not added.duplicate:
            self._events.publish(
                MessageReceived(
                    conversation_id=conversation_id,
                    message_id=plain.id,
                    sender=account,
                    seq=added.message.seq,
                    content_type=plain.content.type,
                    text=plain.content.text,
                    sent_at=plain.ts,
                    received_at=now,
                    is_request=is_request,
                )
            )
        return self._ack(plain.id)

    def _ack(self, message_id: bytes) -> bytes:
        return seal(DmAck(ids=(message_id,)), signing_key=self._signing_key, now=self._clock())

    async def _receive_contact_control(
        self, device: bytes, message: ContactAccept | ContactDecline | ContactRequest
    ) -> None:
        account = self._device_accounts.get(device)
        if isinstance(message, ContactAccept | ContactRequest):
            if account is not None and account != message.account:
                raise WireError("wrong-sender", "contact message for another account")
            account = message.account
        if account is None:
            return
        contact = await self._store.get_contact(account)
        now = self._clock()
        if contact is None or contact.state is ContactState.BLOCKED:
            return
        if isinstance(message, ContactAccept) and contact.state is ContactState.REQUESTED_OUT:
            await self._store.put_contact(_with_state(contact, ContactState.ACCEPTED, now))
            self._events.publish(ContactChanged(account=account, state="accepted"))

    # -- helpers --------------------------------------------------------------------------

    async def _ensure_conversation(self, tx: Transaction, account: bytes, now: int) -> None:
        conversation_id = dm_conversation_id(account)
        if await tx.get_conversation(conversation_id) is None:
            await tx.put_conversation(
                Conversation(
                    conversation_id=conversation_id,
                    kind=ConversationKind.DM,
                    peer_account=account,
                    last_activity=now,
                )
            )

    def _session_record(
        self, account: bytes, device: bytes, session: Session, now: int
    ) -> SessionRecord:
        """The sealed form of ``session`` as the store keeps it."""
        return SessionRecord(
            account=account,
            device=device,
            session_id=session.session_id,
            pickle=self._keys.seal_session(session),
            updated_at=now,
        )

    def _new_contact(self, account: bytes, state: ContactState, now: int) -> Contact:
        return Contact(
            account=account,
            display_name=fingerprint_of(account)[:9],
            state=state,
            created_at=now,
            updated_at=now,
        )


def _with_state(contact: Contact, state: ContactState, now: int) -> Contact:
    return dataclasses.replace(contact, state=state, updated_at=now)


class _Streams:
    """DM streams kept open while one destination's batch is delivered.

    The receiver reads frames in a loop and answers each with its ack, so consecutive
    messages to a device share one stream: a stream open (a multistream-select round
    trip) per message cost about a quarter of the CPU of a delivery (bench/dm_bench.py).
    A stream that failed in any way is reset and never put back; the rest are closed
    when the batch ends.
    """

    def __init__(self, open_stream: Callable[[bytes], Awaitable[FramedStream]]) -> None:
        self._open = open_stream
        self._idle: dict[bytes, FramedStream] = {}

    async def take(self, device: bytes) -> FramedStream:
        stream = self._idle.pop(device, None)
        return stream if stream is not None else await self._open(device)

    def put_back(self, device: bytes, stream: FramedStream) -> None:
        self._idle[device] = stream

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for stream in idle.values():
            with contextlib.suppress(P2PChatError):  # the peer is gone: nothing to close
                await stream.close()


async def _reset_quietly(stream: FramedStream) -> None:
    with contextlib.suppress(P2PChatError):
        await stream.reset()


class _closing:
    """``async with _closing(stream)``: close our side on exit, reset on error."""

    def __init__(self, stream: FramedStream) -> None:
        self._stream = stream

    async def __aenter__(self) -> FramedStream:
        return self._stream

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                await self._stream.close()
            else:
                await self._stream.reset()
        except P2PChatError:
            pass  # the peer is gone; nothing left to close
