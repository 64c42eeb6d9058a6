"""Direct messages: the ``/p2pchat/dm/1.0.0`` protocol driver (sending here, the outbox
worker in :mod:`p2pchat.dm.outbox`, the receiving side in :mod:`p2pchat.dm.receive`).

Sending. ``send`` stores the message (``queued``) and its outbox entry in one
transaction; concurrent sends to one account, and the messages of one ``send_many``,
share it (:mod:`p2pchat.dm.coalesce`: one commit, one fsync, each session sealed once).
With a session to the account (and no older entry still waiting to be
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
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio
from nacl.signing import SigningKey

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.ratchet import Session
from p2pchat_crypto.sealed import Rng

from ..config import DeliveryConfig
from ..errors import (
    ConfigError,
    LocalProtocolError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
)
from ..events import DeliveryChanged, EventBus
from ..identity.directory import Directory
from ..identity.keystore import UnlockedIdentity
from ..identity.local_keys import LocalKeys
from ..net.base import Network
from ..protocol.content import Content, check_outgoing
from ..protocol.dm_messages import (
    ContactAccept,
    ContactDecline,
    DmPlaintext,
)
from ..protocol.envelope import decode_envelope, seal
from ..protocol.limits import PeerLimiter
from ..storage.base import Store, Transaction
from ..storage.records import (
    ContactState,
    DeliveryState,
    DeviceDelivery,
    Direction,
    Message,
    NewMessage,
    NewOutboxItem,
)
from .catchup import missed_by
from .coalesce import Coalescer
from .fanout import DeviceTargets
from .outbox import OUTBOX_KIND, Outbox
from .receive import (
    DM_PROTOCOL,
    MAX_DM_FRAME,
    dm_conversation_id,
)
from .sessions import SessionCache, SessionKey
from .streams import FrameCache, StreamPool, closing

__all__ = [
    "DM_PROTOCOL",
    "MAX_DM_FRAME",
    "MAX_SEND_BATCH",
    "DirectMessages",
    "dm_conversation_id",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
#: A DM stream unused this long is closed (the receiver keeps a task per stream).
_STREAM_IDLE_S = 10.0
#: Messages queued in one call of ``send_many`` (and coalesced sends in one batch) at most.
MAX_SEND_BATCH = 256


class DirectMessages(Outbox):
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
        self._frames = FrameCache()
        # Outbox item id -> its attempt count when its peer last (re)connected. A new
        # connection restarts the backoff: a restarting node connects (bootstrap) before
        # it registers its protocol handlers, so the attempt made on connection can fail,
        # and the next one must come after ``retry_initial_ms``, not after the delay
        # grown while the peer was away (up to ``retry_max_ms``).
        self._backoff_base: dict[int, int] = {}
        self._device_accounts: dict[bytes, bytes] = {}
        #: The devices each message goes to (fan-out, devices.md section 7).
        self.targets = DeviceTargets(
            directory=directory,
            clock=clock,
            own_account=identity.account.account_key,
            own_device=identity.device.public_key,
        )
        # Plaintext outbox entries per (account, device), device None while the account's
        # devices are not resolved (the worker must encrypt them first): while any waits,
        # ``send`` does not encrypt for that device (see ``_queue``).
        self._plaintext_items: Counter[tuple[bytes, bytes | None]] = Counter()
        # Sessions as last committed, used under the account locks (see dm_sessions).
        self._sessions = SessionCache()
        self._conversations: set[str] = set()
        # Our messages in the outbox, by what is known of ``sent`` (see ``_sent``):
        # stored ``queued`` and not announced; announced (``sent`` event published);
        # announced but not stored. Ids leave when delivered, failed or mailed.
        self._unsent: set[bytes | None] = set()
        self._announced: set[bytes | None] = set()
        self._sent_volatile: set[bytes | None] = set()
        # Why each of our messages still waits: the outbox's last error (see ``waiting``).
        self._waiting: dict[bytes, str] = {}
        self._account_locks: defaultdict[bytes, trio.Lock] = defaultdict(trio.Lock)
        # Concurrent sends to one account: one batch, one transaction (see ``send``).
        self._send_queue: Coalescer[bytes, DmPlaintext, Message] = Coalescer(
            self._send_batch, max_batch=MAX_SEND_BATCH
        )
        # Serialises the receive path: sessions and the replay cache are read-modify-write.
        self._receive_lock = trio.Lock()
        self.stats: dict[str, int] = defaultdict(int)
        #: Set by the node when mailboxes are in use: ``await deposit(account, frame)``
        #: returns whether a mailbox took the frame.
        self.mailbox_deposit: Callable[[bytes, bytes | None, bytes], Awaitable[bool]] | None = None
        #: Called with our messages newly delivered to a device of their recipient (the
        #: node tells our other devices: :mod:`p2pchat.dm.own_sync`).
        self.on_delivered: Callable[[list[bytes]], Awaitable[None]] | None = None
        #: Content types consumed by the node itself (never shown, never stored as
        #: messages): ``type -> await handler(account, device, content)``.
        self.control_handlers: dict[str, Callable[[bytes, bytes, Content], Awaitable[None]]] = {}
        #: Called with (sender device, content) of each message newly stored, before its
        #: ``MessageReceived`` (the node notes attachments: no store read per message).
        self.on_received: Callable[[bytes, Content], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def waiting(self, message_id: bytes) -> str | None:
        """Why our message ``message_id`` is not delivered yet: the last failed attempt's
        reason (``account not found: ...``, per-address dial failures...), or ``None``."""
        return self._waiting.get(message_id)

    async def cancel(self, message_id: bytes) -> Message:
        """Take back one of our messages that was never sent: it leaves the outbox and
        fails with the reason ``cancelled``. A message already written to the recipient
        (``sent``) or delivered cannot be taken back (:class:`ConfigError`)."""
        message = await self._store.get_message(message_id)
        if message is None or message.direction is not Direction.OUT:
            raise NotFoundError("no such message of yours")
        account = bytes.fromhex(message.conversation_id.removeprefix("dm:"))
        async with self._account_locks[account]:
            message = await self._store.get_message(message_id)
            assert message is not None
            if message.state is not DeliveryState.QUEUED:
                raise ConfigError(
                    f"that message is {message.state.value}: only a queued message "
                    "(never sent) can be cancelled"
                )
            items = [
                i
                for i in await self._store.due_outbox(2**62, limit=2**31)
                if i.message_id == message_id
            ]
            async with self._store.transaction() as tx:
                for item in items:
                    await tx.remove_outbox(item.item_id)
                await tx.set_delivery(message_id, DeliveryState.FAILED, reason="cancelled")
            for item in items:
                self._backoff_base.pop(item.item_id, None)
                if self._is_plaintext(item):
                    self._plaintext_items[item.destination_account, item.destination_device] -= 1
        self._forget_sent(message_id)
        self._emit_delivery(message_id, message.conversation_id, "failed", "cancelled")
        self.stats["cancelled"] += 1
        updated = await self._store.get_message(message_id)
        assert updated is not None
        return updated

    async def start(self) -> None:
        """Index every session by device (contacts and group members alike: a member of a
        shared group who is not a contact still sends us sender keys) and start
        accepting streams."""
        for account, device in await self._store.list_session_peers():
            self._device_accounts[device] = account
            self.targets.learn(account, device)
        for item in await self._store.due_outbox(2**62, limit=2**31):
            if self._is_plaintext(item):
                self._plaintext_items[item.destination_account, item.destination_device] += 1
            if item.message_id is not None and item.last_error:
                self._waiting[item.message_id] = item.last_error
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
        """Queue a message to ``account``; returns it in state ``queued``.

        Concurrent sends to one account are coalesced (:mod:`p2pchat.dm.coalesce`): one
        transaction, one fsync for all of them."""
        (message,) = await self.send_many(account, [(content, reply_to)])
        return message

    async def send_many(
        self, account: bytes, messages: Sequence[tuple[Content, bytes | None]]
    ) -> list[Message]:
        """Queue several messages (``(content, reply_to)``) to ``account``, in this order,
        in one transaction (all or none); returns them in state ``queued``."""
        if account == self._account.account_key:
            raise LocalProtocolError("you cannot send a direct message to yourself")
        if not messages:
            return []
        if len(messages) > MAX_SEND_BATCH:
            raise ConfigError(f"at most {MAX_SEND_BATCH} messages at once")
        outgoing = []
        for content, reply_to in messages:
            check_outgoing(content)  # what the recipient would refuse is refused here
            plaintext = DmPlaintext(
                id=self._rng(16),
                ts=self._clock(),
                content=content,
                reply_to=reply_to,
                name=self._display_name,
            )
            outgoing.append(plaintext)
        sent = await self._send_queue.submit(account, outgoing)
        self.stats["queued"] += len(sent)
        self._wakeup.set()
        return sent

    async def _send_batch(self, account: bytes, outgoing: list[DmPlaintext]) -> list[Message]:
        """Store a batch of messages to ``account`` (see :meth:`_queue`); the
        :class:`Coalescer` of :meth:`send_many` runs it."""
        now = self._clock()
        conversation_id = dm_conversation_id(account)
        records = [
            NewMessage(
                conversation_id=conversation_id,
                message_id=plaintext.id,
                sender_account=self._account.account_key,
                sender_device=self._device.public_key,
                direction=Direction.OUT,
                content_type=plaintext.content.type,
                body=plaintext.content.to_bytes(),
                sent_at=plaintext.ts,
                received_at=now,
                state=DeliveryState.QUEUED,
            )
            for plaintext in outgoing
        ]
        requested = self._new_contact(account, ContactState.REQUESTED_OUT, now)

        async def record(tx: Transaction) -> list[Message]:
            contact = await tx.get_contact(account)
            if contact is None:
                await tx.put_contact(requested)
            elif contact.state is ContactState.BLOCKED:
                raise PermissionDeniedError("this contact is blocked; unblock it to send")
            await self._ensure_conversation(tx, account, now)
            return [(await tx.add_message(new)).message for new in records]

        # Our own other devices get a copy naming the recipient.
        texts = [(p, dataclasses.replace(p, to=account)) for p in outgoing]
        sent = await self._queue(
            account, texts, conversation_id=conversation_id, now=now, record=record
        )
        for message in sent:
            self._unsent.add(message.message_id)
            self._events.publish(
                DeliveryChanged(
                    conversation_id=conversation_id, message_id=message.message_id, state="queued"
                )
            )
        return sent

    def set_display_name(self, name: str | None) -> None:
        """The name our next messages carry (``dm-plaintext`` ``name``)."""
        self._display_name = name

    async def send_hidden(self, account: bytes, content: Content) -> None:
        """Queue node-to-node content (e.g. our mailbox tag): encrypted and retried like a
        message, but not stored in any conversation."""
        now = self._clock()
        plaintext = DmPlaintext(id=self._rng(16), ts=now, content=content)

        async def record(tx: Transaction) -> None:
            return None

        await self._queue(
            account, [(plaintext, None)], conversation_id=None, now=now, record=record
        )
        self._wakeup.set()

    async def catch_up(self) -> None:
        """Devices that appeared in an account's list (``targets.appeared``) get what this
        device sent to the account since their certificate and that never went to them
        (:mod:`p2pchat.dm.catchup`): same id and time, delivery state per device."""
        while self.targets.appeared:
            (account, device), since = self.targets.appeared.popitem()
            if device in self.targets.revoked:
                continue
            conversation_id = dm_conversation_id(account)
            now = self._clock()
            missed = await missed_by(
                self._store,
                conversation_id=conversation_id,
                own_device=self._device.public_key,
                device=device,
                since=since,
                now=now,
            )
            if not missed:
                continue
            texts = [
                (
                    DmPlaintext(
                        id=m.message_id,
                        ts=m.sent_at,
                        content=Content.from_bytes(m.body, max_size=len(m.body) or 1),
                        name=self._display_name,
                    ),
                    None,
                )
                for m in missed
            ]

            async def record(tx: Transaction) -> None:
                return None

            await self._queue(
                account,
                texts,
                conversation_id=conversation_id,
                now=now,
                record=record,
                devices=(device,),
            )
            self.stats["caught_up"] += len(texts)
            self._wakeup.set()

    def _targets(self, account: bytes, *, copies: bool) -> list[tuple[bytes, bytes | None]]:
        """Where a message to ``account`` goes now: ``(account, device)`` for each of its
        known devices (one ``(account, None)`` while they are unknown or were looked up
        over a minute ago, or while an older entry waits for the worker to resolve them:
        the worker looks the list up first), then ``(our account, device)`` for
        each of our other devices if ``copies``."""
        known = self.targets.known(account)
        targets: list[tuple[bytes, bytes | None]]
        stale = self.targets.stale(account)  # a device may have been linked since
        if known is None or stale or self._plaintext_items[account, None] > 0:
            targets = [(account, None)]
        else:
            targets = [(account, device) for device in known]
        if copies:
            own = self._account.account_key
            targets += [(own, device) for device in self.targets.own_others()]
        return targets

    async def _queue(
        self,
        account: bytes,
        texts: Sequence[tuple[DmPlaintext, DmPlaintext | None]],
        *,
        conversation_id: str | None,
        now: int,
        record: Callable[[Transaction], Awaitable[_T]],
        devices: Sequence[bytes] | None = None,
    ) -> _T:
        """Store what ``record`` writes and, for each ``(plaintext, copy)`` of ``texts``
        in order, one outbox entry per target device (see ``_targets``, or ``devices`` of
        ``account`` if given; ``copy``, if given, goes to our own other devices) in one
        transaction (one unit of work: ``record`` may await only the transaction).

        With a session to a device, the messages are encrypted here for it and their
        entries hold the frames: one commit for the batch (each session sealed once),
        where encrypting in the outbox worker cost a second one. Not while an older
        entry to the device waits to be encrypted (its place in the ratchet comes first),
        nor without a session (X3DH needs the device's bundle from the DHT), nor while
        the account's devices are unknown: the worker encrypts those, in order.
        """
        own = self._account.account_key
        copies = any(copy is not None for _, copy in texts)
        locks = sorted({account} | ({own} if copies else set()))
        async with contextlib.AsyncExitStack() as stack:
            for lock_account in locks:
                await stack.enter_async_context(self._account_locks[lock_account])
            # The sessions this batch advanced, by device: the next message continues them.
            sealed: dict[tuple[bytes, bytes], tuple[SessionKey, Session]] = {}
            items: list[NewOutboxItem] = []
            frames: list[bytes | None] = []  # each item's frame, None while plaintext
            plain_targets: list[tuple[bytes, bytes | None]] = []
            try:
                for plaintext, copy in texts:
                    targets = (
                        self._targets(account, copies=copy is not None)
                        if devices is None
                        else [(account, device) for device in devices]
                    )
                    for target_account, device in targets:
                        text = plaintext if target_account == account or copy is None else copy
                        encrypted = None
                        if (
                            device is not None
                            and self._plaintext_items[target_account, device] <= 0
                            and (target_account, device) not in plain_targets
                        ):
                            latest = sealed.get((target_account, device))
                            encrypted = await self._encrypt_now(
                                target_account, device, text, now, latest
                            )
                        if encrypted is None:
                            body: dict[str, cbor.Value] = {"pt": text.to_bytes()}
                            plain_targets.append((target_account, device))
                            frames.append(None)
                        else:
                            key, session, frame = encrypted
                            sealed[key[0], key[1]] = (key, session)
                            body = {"frame": frame}
                            frames.append(frame)
                        items.append(
                            NewOutboxItem(
                                destination_account=target_account,
                                destination_device=device,
                                conversation_id=conversation_id,
                                message_id=plaintext.id,
                                payload=self._keys.seal_blob(OUTBOX_KIND, body),
                                created_at=now,
                            )
                        )
                session_records = [self._session_record(k, s, now) for k, s in sealed.values()]
                deliveries = [
                    DeviceDelivery(
                        message_id=item.message_id,
                        device=item.destination_device,
                        state=DeliveryState.QUEUED,
                        updated_at=now,
                    )
                    for item in items
                    if item.destination_device is not None
                    and item.message_id is not None
                    and conversation_id is not None
                ]

                async def unit(tx: Transaction) -> tuple[_T, list[int]]:
                    result = await record(tx)
                    for session_record in session_records:
                        await tx.put_session(session_record)
                    added = [(await tx.add_outbox(item)).item_id for item in items]
                    for delivery in deliveries:
                        await tx.set_device_delivery(delivery)
                    return result, added

                result, item_ids = await self._store.atomically(unit)
            except BaseException:
                for key, _ in sealed.values():
                    self._sessions.forget(key)  # advanced, never stored
                raise
            for target in plain_targets:
                self._plaintext_items[target] += 1
            for key, session in sealed.values():
                self._sessions.stored(key, session)
                self._device_accounts[key[1]] = key[0]
            for item_id, ready in zip(item_ids, frames, strict=True):
                if ready is not None:
                    self._frames.put(item_id, ready)
        return result

    async def _encrypt_now(
        self,
        account: bytes,
        device: bytes,
        plaintext: DmPlaintext,
        now: int,
        latest: tuple[SessionKey, Session] | None = None,
    ) -> tuple[SessionKey, Session, bytes] | None:
        """With ``latest`` (the session this batch advanced) or else the most recent
        session to ``device``: (its key, session, frame)."""
        if latest is None:
            latest = await self._latest_session(account, device)
        if latest is None:
            return None
        key, session = latest
        try:
            wire = session.encrypt(plaintext.to_bytes(), self._rng)
        except CryptoError:
            self._sessions.forget(key)
            return None  # the worker will try (and report) it
        return key, session, self._dm_frame(plaintext.id, wire, now)

    async def queue_frame(self, account: bytes, device: bytes, frame: bytes) -> None:
        """Queue a ready frame that expects no reply (a receipt for mail fetched from a
        mailbox): delivered when the device is reachable."""
        await self._store.add_outbox(
            NewOutboxItem(
                destination_account=account,
                destination_device=device,
                payload=self._keys.seal_blob(OUTBOX_KIND, {"frame": frame, "oneway": True}),
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
