"""Direct messages, the receiving side: batches of frames, one commit, one ack.

Per remote peer, a token bucket runs before any signature check; blocked accounts are
dropped before any decryption. The frames a stream delivered so far form a batch
(:class:`~p2pchat.dm.streams.FrameBatches`): they are decrypted in order (each may
advance the session the next needs, so the batch keeps the sessions it changed), then
the sessions, the replay cache, the messages (deduplicated by id) and the contacts are
committed in ONE transaction, and only then is ONE ``dm.ack`` sent naming them all: an
acknowledged message is durable, and a batch costs one fsync and one signature. A
message already stored is re-acknowledged without being shown again. The first bad
frame stops the batch: what came before it is still committed and acknowledged, the
stream is reset, and the sender retries the rest (same ciphertext), in order.

:class:`Receiving` is a base of :class:`p2pchat.dm.service.DirectMessages`, which owns the
state declared here and the sending side (``_delivered``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import trio
from nacl.signing import SigningKey

from p2pchat_crypto.errors import CryptoError, DuplicateMessageError
from p2pchat_crypto.identity import Account
from p2pchat_crypto.ratchet import Session
from p2pchat_crypto.x3dh import InitialMessage

from ..errors import (
    P2PChatError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    WireError,
)
from ..events import ContactChanged, EventBus
from ..identity.local_keys import LocalKeys
from ..identity.peerid import peer_id_to_key
from ..net.base import FramedStream
from ..protocol.content import Content
from ..protocol.dm_messages import (
    ContactAccept,
    ContactDecline,
    ContactRequest,
    DmAck,
    DmInit,
    DmMessage,
    DmPlaintext,
    DmRefuse,
)
from ..protocol.envelope import Envelope, decode_envelope, seal
from ..protocol.limits import PeerLimiter
from ..storage.base import Store
from ..storage.records import (
    ContactState,
    Direction,
)
from .fanout import DeviceTargets
from .sessions import Inbound, ReceiveBatch, SessionCache
from .storing import Storing, dm_conversation_id, with_state
from .streams import FrameBatches

__all__ = ["DM_PROTOCOL", "MAX_DM_FRAME", "Receiving", "dm_conversation_id"]

logger = logging.getLogger("p2pchat.dm")

DM_PROTOCOL = "/p2pchat/dm/1.0.0"
#: Cap on one DM frame (a message is at most 16 KiB of text plus crypto overhead).
MAX_DM_FRAME = 256 * 1024
#: Outbox items looked at per pass (the sending side's batch).
OUTBOX_BATCH = 200
#: Frames a receiver commits (and acknowledges) together at most; <= DmAck's 256 ids.
RECEIVE_BATCH = 64


class Receiving(Storing):
    """The receive path of :class:`p2pchat.dm.service.DirectMessages` (see the module docstring)."""

    _account: Account
    _signing_key: SigningKey
    _store: Store
    _keys: LocalKeys
    _events: EventBus
    _clock: Callable[[], int]
    _limiter: PeerLimiter
    _device_accounts: dict[bytes, bytes]
    _account_locks: defaultdict[bytes, trio.Lock]
    _receive_lock: trio.Lock
    _sessions: SessionCache
    targets: DeviceTargets
    _conversations: set[str]
    stats: dict[str, int]
    control_handlers: dict[str, Callable[[bytes, bytes, Content], Awaitable[None]]]

    async def _delivered(
        self,
        receipts: list[tuple[bytes | None, int | None]],
        *,
        account: bytes,
        device: bytes,
    ) -> None:
        """Receipts arrived (the sending side marks its messages delivered)."""
        raise NotImplementedError

    # -- receiving ------------------------------------------------------------------------

    async def _handle_stream(self, stream: FramedStream) -> None:
        """Serve one inbound DM stream: batches of frames, one commit and one ack each.

        Frames that arrive while a batch is being processed form the next batch
        (:class:`FrameBatches`). A bad frame ends the stream (reset) only after the
        frames before it were committed and acknowledged; the frames after it are not
        acknowledged, so the sender retries them, in order.
        """
        peer_id = stream.remote_peer
        try:
            device = peer_id_to_key(peer_id)
        except ValueError:
            await stream.reset()
            return
        batches = FrameBatches(stream, max_size=MAX_DM_FRAME, max_batch=RECEIVE_BATCH)
        failure: P2PChatError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batches.run)
            try:
                await self._serve(stream, batches, device=device, peer_id=peer_id)
            except P2PChatError as exc:
                failure = exc  # raised below, outside the nursery (not as a group)
            finally:
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure  # the adapter resets the stream

    async def _serve(
        self, stream: FramedStream, batches: FrameBatches, *, device: bytes, peer_id: str
    ) -> None:
        while frames := await batches.next():
            replies, error = await self._receive_batch(frames, device=device, peer_id=peer_id)
            await stream.write_frames(replies)
            if error is not None:
                self._count_rejection(error, peer_id)
                await stream.reset()
                return

    def _count_rejection(self, error: P2PChatError, peer_id: str) -> None:
        if isinstance(error, RateLimitedError):
            self.stats["rate_limited"] += 1
        else:
            self.stats["rejected"] += 1
            logger.info("dropped a frame from %s: %s", peer_id, error)

    async def receive_frame(
        self, frame: bytes, *, device: bytes | None, peer_id: str
    ) -> list[bytes]:
        """Process one inbound frame; return the reply frames (a receipt or a refusal).

        ``device`` is the transport-authenticated sender (the stream's peer); ``None`` for
        a frame fetched from a mailbox, which only its envelope signature authenticates.

        Raises :class:`RateLimitedError`, :class:`ProtocolError` (bad frame, signature or
        ciphertext) or :class:`PermissionDeniedError` (blocked sender).
        """
        replies, error = await self._receive_batch([frame], device=device, peer_id=peer_id)
        if error is not None:
            raise error
        return replies

    async def _receive_batch(
        self, frames: list[bytes], *, device: bytes | None, peer_id: str
    ) -> tuple[list[bytes], P2PChatError | None]:
        """Process ``frames`` in order; return the replies and the error that stopped it.

        Messages are decrypted one after the other (each may advance the session the
        next one needs, so the batch keeps the sessions it changed), then committed in
        one transaction, and only then acknowledged, by one ``dm.ack`` naming them all
        and the duplicates met on the way. Any other frame first flushes the messages
        before it, which keeps the order of effects. Processing stops at the first bad
        frame: what came before it is still committed and acknowledged.
        """
        replies: list[bytes] = []
        error: P2PChatError | None = None
        async with self._receive_lock:
            batch = ReceiveBatch()
            try:
                for frame in frames:
                    try:
                        envelope, message = await self._open_frame(frame, device, peer_id, batch)
                        if isinstance(message, DmInit | DmMessage):
                            await self._decrypt_into(batch, envelope, message)
                            continue
                        replies += await self._flush(batch)
                        batch = ReceiveBatch()
                        await self._receive_other(envelope.sender, message)
                    except (RateLimitedError, ProtocolError, PermissionDeniedError) as exc:
                        error = exc
                        break
                replies += await self._flush(batch)
            finally:
                for key in batch.sessions:  # advanced, not committed (an error)
                    self._sessions.forget(key)
                batch.release()
        return replies, error

    async def _open_frame(
        self, frame: bytes, device: bytes | None, peer_id: str, batch: ReceiveBatch
    ) -> tuple[Envelope, object]:
        """Rate limit, then decode and verify: cheap checks before the signature."""
        if not self._limiter.allow(peer_id, self._clock()):
            raise RateLimitedError("too many frames from this peer")
        envelope = decode_envelope(frame, max_size=MAX_DM_FRAME)
        if device is None:
            device = envelope.sender
        elif envelope.sender != device:
            raise WireError("wrong-sender", "envelope sender is not the connected device")
        if device in self.targets.revoked:
            raise PermissionDeniedError("this device was revoked by its account")
        known_account = self._device_accounts.get(device)
        if known_account is not None and known_account not in batch.not_blocked:
            if await self._store.is_blocked(known_account):
                raise PermissionDeniedError("sender is blocked")
            batch.not_blocked.add(known_account)
        envelope.verify()
        message = envelope.open()
        self.stats["frames_in"] += 1
        return envelope, message

    async def _refused(
        self,
        receipts: list[tuple[bytes | None, int | None]],
        why: str,
        *,
        account: bytes,
        device: bytes,
    ) -> None:
        """Refusals arrived (the sending side fails its messages)."""
        raise NotImplementedError

    async def _receive_other(self, device: bytes, message: object) -> None:
        if isinstance(message, DmAck):
            for message_id in message.ids:
                await self._acknowledged(message_id, device)
        elif isinstance(message, DmRefuse):
            for message_id in message.ids:
                await self._acknowledged(message_id, device, refused=message.reason)
        elif isinstance(message, ContactAccept | ContactDecline | ContactRequest):
            await self._receive_contact_control(device, message)
        else:
            raise WireError("unexpected-kind", "this kind is not used on this protocol")

    async def _acknowledged(
        self, message_id: bytes, device: bytes, *, refused: str | None = None
    ) -> None:
        """A receipt (or a refusal): only a device the message went to (a device of the
        recipient account, or one of our own) may settle it, on that device."""
        account = self._device_accounts.get(device)
        if account is None:
            return
        waiting = await self._store.due_outbox(2**62, limit=OUTBOX_BATCH)
        item = next(
            (i for i in waiting if i.message_id == message_id and i.destination_device == device),
            None,
        )
        if item is not None and item.destination_account != account:
            return
        message = await self._store.get_message(message_id)
        own = account == self._account.account_key
        if (
            message is not None
            and message.conversation_id != dm_conversation_id(account)
            and not (own and message.direction is Direction.OUT)
        ):
            return
        settled: list[tuple[bytes | None, int | None]] = [
            (message_id, None if item is None else item.item_id)
        ]
        if refused is not None:
            await self._refused(settled, refused, account=account, device=device)
        else:
            await self._delivered(settled, account=account, device=device)

    async def _decrypt_into(
        self, batch: ReceiveBatch, envelope: Envelope, message: DmInit | DmMessage
    ) -> None:
        """Decrypt one message into ``batch`` (or note it as a duplicate to re-ack)."""
        device = envelope.sender
        if message.id in batch.ids:
            self.stats["duplicates"] += 1  # acknowledged with the first copy
            return
        # A message we already stored is not looked up first (a store call per
        # message): its session moved past it when it was stored, so it fails to
        # decrypt, and only then is the store asked whether we have it.
        try:
            if isinstance(message, DmInit):
                account, session, plaintext, reused = await self._decrypt_initial(
                    batch, device, message
                )
            else:
                found = batch.device_accounts.get(device) or self._device_accounts.get(device)
                if found is None:
                    raise WireError("unknown-session", "no session with this device")
                account = found
                await batch.lock(self._account_locks[account])
                session, plaintext, reused = await self._decrypt_with_any(
                    batch, account, device, message
                )
        except DuplicateMessageError:
            # The message key was used by a decryption that committed (state changes only
            # on success, and the session is stored with the message): we have it.
            self.stats["duplicates"] += 1
            batch.ack_ids.append(message.id)
            return
        except (CryptoError, WireError) as exc:
            if isinstance(exc, WireError) and exc.reason != "unknown-session":
                raise
            stored = await self._store.get_message(message.id)
            if stored is not None and stored.direction is Direction.IN:
                self.stats["duplicates"] += 1  # say, its session was replaced since
                batch.ack_ids.append(message.id)
                return
            if isinstance(exc, WireError):
                raise
            raise WireError("undecryptable", type(exc).__name__) from None
        key = (account, device, session.session_id)
        try:
            plain = DmPlaintext.from_bytes(plaintext, max_size=len(plaintext) or 1)
        except ProtocolError as exc:
            # Authentic (it decrypted) but not a message we can store, say a text over
            # the limit: retrying could never help. The session moves past it (committed
            # with the batch) and the sender gets a signed refusal instead of a receipt.
            logger.info("refused message %s from %s: %s", message.id.hex()[:8], account.hex(), exc)
            batch.refuse(key, session, account, device, message.id, "invalid-content")
            return
        if plain.id != message.id:
            if reused:
                # This decryption advanced a shared session object: neither it nor the
                # messages decrypted with it may be committed (the sender retries them).
                batch.discard(key)
                self._sessions.forget(key)
            raise WireError("id-mismatch", "encrypted id differs from the envelope's")
        own = account == self._account.account_key
        if own and plain.content.type not in self.control_handlers and plain.to in (None, account):
            # From our own other device, a message must name the account it was sent to.
            batch.refuse(key, session, account, device, message.id, "invalid-content")
            return
        batch.add(key, session, Inbound(account=account, device=device, plain=plain))

    async def _decrypt_initial(
        self, batch: ReceiveBatch, device: bytes, message: DmInit
    ) -> tuple[bytes, Session, bytes, bool]:
        """An X3DH initial message: continue the session it names, or respond to it."""
        initial = InitialMessage.decode(message.x3dh)
        account = initial.initiator.account_key
        if initial.initiator_device is None or initial.initiator_device.device_key != device:
            raise WireError("wrong-sender", "initial message names another device")
        if account not in batch.not_blocked:
            if await self._store.is_blocked(account):
                raise PermissionDeniedError("sender is blocked")
            batch.not_blocked.add(account)
        if device in self.targets.revoked:
            raise PermissionDeniedError("this device was revoked by its account")
        await batch.lock(self._account_locks[account])
        key = (account, device, initial.session_id)
        session = batch.sessions.get(key) or self._sessions.get(key)
        if session is not None:
            return account, session, session.decrypt(message.x3dh), True
        existing = await self._store.get_session(*key)
        if existing is not None:
            session = self._keys.open_session(existing.pickle)
            return account, session, session.decrypt(message.x3dh), False
        session, plaintext = Session.respond(
            self._account,
            self._keys.prekeys,
            initial,
            self._keys.replay_cache,
            now=self._clock(),
        )
        batch.replay_changed = True
        self.targets.learn(account, device)  # certified by the account (X3DH verified it)
        return account, session, plaintext, False

    async def _decrypt_with_any(
        self, batch: ReceiveBatch, account: bytes, device: bytes, message: DmMessage
    ) -> tuple[Session, bytes, bool]:
        """Try the device's sessions, most recent first (headers are encrypted): first
        those this batch advanced, then the stored ones. The flag: the session object is
        shared (the batch's or the cache's), so a failure after this must forget it."""
        last: CryptoError | None = None
        tried: set[bytes] = set()
        for session in batch.sessions_of(account, device):
            tried.add(session.session_id)
            try:
                return session, session.decrypt(message.ratchet), True
            except DuplicateMessageError:
                raise
            except CryptoError as exc:
                last = exc
        for record in await self._store.list_sessions(account, device=device):
            if record.session_id in tried:
                continue
            cached = self._sessions.get((account, device, record.session_id))
            session = cached or self._keys.open_session(record.pickle)
            try:
                return session, session.decrypt(message.ratchet), cached is not None
            except DuplicateMessageError:
                raise
            except CryptoError as exc:
                last = exc
        raise last or WireError("unknown-session", "no session with this device")

    async def _flush(self, batch: ReceiveBatch) -> list[bytes]:
        """Commit the batch in one transaction, then (only then) build its one ack.

        The account locks the batch took (sessions are shared with ``send``) are
        released after the commit, before the effects: a control handler may send.
        """
        outcomes = await self._store_received(batch) if batch.messages or batch.sessions else []
        batch.release()
        now = self._clock()
        for outcome in outcomes:
            await self._after_commit(*outcome, now=now)
        replies = []
        if batch.ack_ids:
            ack = DmAck(ids=tuple(batch.ack_ids))
            replies.append(seal(ack, signing_key=self._signing_key, now=self._clock()))
        for reason, ids in batch.refused.items():
            refusal = DmRefuse(ids=tuple(ids), reason=reason)
            replies.append(seal(refusal, signing_key=self._signing_key, now=self._clock()))
        return replies

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
            await self._store.put_contact(with_state(contact, ContactState.ACCEPTED, now))
            self._events.publish(ContactChanged(account=account, state="accepted"))
