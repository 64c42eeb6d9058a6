"""Direct messages, the receiving side's storing step: a decrypted batch is committed in
one transaction (sessions, replay cache, contacts, messages), then its effects run
(events, control handlers). Split from :mod:`p2pchat.dm.receive`, which decrypts.

:class:`Storing` is a base of :class:`~p2pchat.dm.receive.Receiving`; the DM driver owns
the state declared here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from p2pchat_crypto.identity import Account, fingerprint_of
from p2pchat_crypto.ratchet import Session

from ..errors import P2PChatError
from ..events import ContactRequestReceived, EventBus, MessageReceived
from ..identity.local_keys import LocalKeys
from ..protocol.content import Content
from ..storage.base import Store, Transaction
from ..storage.records import (
    AddedMessage,
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    DeliveryState,
    Direction,
    NewMessage,
    SessionRecord,
)
from .sessions import Inbound, ReceiveBatch, SessionCache, SessionKey

__all__ = ["Outcome", "Storing", "dm_conversation_id", "with_state"]

logger = logging.getLogger("p2pchat.dm")


def dm_conversation_id(account: bytes) -> str:
    return "dm:" + account.hex()


class Storing:
    """Commit a decrypted batch, then its effects (see the module docstring)."""

    _account: Account
    _store: Store
    _keys: LocalKeys
    _events: EventBus
    _clock: Callable[[], int]
    _device_accounts: dict[bytes, bytes]
    _sessions: SessionCache
    _conversations: set[str]
    stats: dict[str, int]
    control_handlers: dict[str, Callable[[bytes, bytes, Content], Awaitable[None]]]
    on_received: Callable[[bytes, Content], None] | None

    async def _store_received(self, batch: ReceiveBatch) -> list[Outcome]:
        """Sessions, replay cache, contacts and messages of a batch: one transaction (one
        unit of work, one thread hop)."""
        now = self._clock()
        records = [
            self._session_record(key, session, now) for key, session in batch.sessions.items()
        ]
        acked: list[bytes] = []
        declined: list[bytes] = []

        async def unit(tx: Transaction) -> list[Outcome]:
            acked.clear()
            declined.clear()
            contacts: dict[bytes, Contact | None] = {}
            conversations: set[bytes] = set()
            outcomes: list[Outcome] = []
            for record in records:
                await tx.put_session(record)
            if batch.replay_changed:
                await self._keys.save_replay_cache(tx)
            for inbound in batch.messages:
                account = inbound.account
                if account == self._account.account_key and inbound.plain.to is not None:
                    added = await self._store_own_copy(tx, inbound, inbound.plain.to, now)
                    acked.append(inbound.plain.id)
                    outcomes.append((inbound, None, False, False, added))
                    continue
                if account not in contacts:
                    contacts[account] = await tx.get_contact(account)
                contact = contacts[account]
                if inbound.plain.content.type in self.control_handlers:
                    acked.append(inbound.plain.id)
                    outcomes.append((inbound, contact, False, False, None))
                    continue
                new_request = contact is None
                is_request = contact is None or contact.state is ContactState.REQUESTED_IN
                if contact is None:
                    contact = self._new_contact(account, ContactState.REQUESTED_IN, now)
                    await tx.put_contact(contact)
                elif contact.state is ContactState.REQUESTED_OUT:
                    # They answered our first message: consent both ways.
                    contact = with_state(contact, ContactState.ACCEPTED, now)
                    await tx.put_contact(contact)
                contact = await self._claimed_name(tx, contact, inbound.plain.name, now)
                contacts[account] = contact
                if contact.state is ContactState.DECLINED:
                    # Not stored, so not acknowledged: the sender learns it was declined.
                    declined.append(inbound.plain.id)
                    continue
                if account not in conversations:
                    await self._ensure_conversation(tx, account, now)
                    conversations.add(account)
                added = await tx.add_message(self._inbound_record(inbound, now))
                acked.append(inbound.plain.id)
                outcomes.append((inbound, contact, new_request, is_request, added))
            return outcomes

        outcomes = await self._store.atomically(unit)
        batch.ack_ids += acked
        if declined:
            batch.refused["declined"] += declined
        # Committed: only now may the sender learn that we have them.
        for key, session in batch.sessions.items():
            self._sessions.stored(key, session)
        batch.sessions.clear()
        self._device_accounts.update(batch.device_accounts)
        return outcomes

    async def _store_own_copy(
        self, tx: Transaction, inbound: Inbound, to: bytes, now: int
    ) -> AddedMessage:
        """A message one of our other devices sent to ``to``: stored as ours (sent), in
        the conversation with ``to``, which is created (with a contact we asked) if new."""
        contact = await tx.get_contact(to)
        if contact is None:
            await tx.put_contact(self._new_contact(to, ContactState.REQUESTED_OUT, now))
        await self._ensure_conversation(tx, to, now)
        return await tx.add_message(self._inbound_record(inbound, now, peer=to, ours=True))

    async def _after_commit(
        self,
        inbound: Inbound,
        contact: Contact | None,
        new_request: bool,
        is_request: bool,
        added: AddedMessage | None,
        *,
        now: int,
    ) -> None:
        account, plain = inbound.account, inbound.plain
        handler = self.control_handlers.get(plain.content.type)
        if handler is not None:
            if contact is None or contact.state is not ContactState.BLOCKED:
                try:
                    await handler(account, inbound.device, plain.content)
                except P2PChatError as exc:
                    # Committed (the session moved past it): acknowledged either way, or
                    # the sender would retry a frame we can no longer decrypt.
                    logger.info("control content from %s refused: %s", account.hex(), exc)
                    return
                self.stats["control"] += 1
            return
        self.stats["received"] += 1
        if new_request:
            self._events.publish(
                ContactRequestReceived(
                    account=account,
                    fingerprint=fingerprint_of(account),
                    name=contact.claimed_name if contact is not None else None,
                )
            )
        if added is not None and not added.duplicate:
            if self.on_received is not None:
                self.on_received(inbound.device, plain.content)
            self._events.publish(
                MessageReceived(
                    conversation_id=added.message.conversation_id,
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

    def _inbound_record(
        self, inbound: Inbound, now: int, *, peer: bytes | None = None, ours: bool = False
    ) -> NewMessage:
        """The message ``inbound`` carries: received from its sender, or (``ours``) a copy
        of what another of our devices sent to ``peer``, kept as sent by us."""
        plain = inbound.plain
        return NewMessage(
            conversation_id=dm_conversation_id(peer or inbound.account),
            message_id=plain.id,
            sender_account=inbound.account,
            sender_device=inbound.device,
            direction=Direction.OUT if ours else Direction.IN,
            content_type=plain.content.type,
            body=plain.content.to_bytes(),
            sent_at=plain.ts,
            received_at=now,
            state=DeliveryState.SENT if ours else DeliveryState.DELIVERED,
        )

    # -- helpers --------------------------------------------------------------------------

    async def _ensure_conversation(self, tx: Transaction, account: bytes, now: int) -> None:
        """Create the account's conversation if needed. Conversations are never deleted,
        so one seen in the store (committed: callers ask once per transaction) is
        remembered, which saves a store call per message."""
        conversation_id = dm_conversation_id(account)
        if conversation_id in self._conversations:
            return
        if await tx.get_conversation(conversation_id) is not None:
            self._conversations.add(conversation_id)
        else:
            await tx.put_conversation(
                Conversation(
                    conversation_id=conversation_id,
                    kind=ConversationKind.DM,
                    peer_account=account,
                    last_activity=now,
                )
            )

    def _session_record(self, key: SessionKey, session: Session, now: int) -> SessionRecord:
        """The sealed form of ``session`` as the store keeps it."""
        account, device, session_id = key
        return SessionRecord(
            account=account,
            device=device,
            session_id=session_id,
            pickle=self._keys.seal_session(session),
            updated_at=now,
        )

    async def _claimed_name(
        self, tx: Transaction, contact: Contact, name: str | None, now: int
    ) -> Contact:
        """Remember the name the sender gives themselves (a claim: shown marked as one)."""
        claimed = " ".join(name.split()) if name is not None else ""
        if not claimed or claimed == contact.claimed_name:
            return contact
        contact = dataclasses.replace(contact, claimed_name=claimed, updated_at=now)
        await tx.put_contact(contact)
        return contact

    def _new_contact(self, account: bytes, state: ContactState, now: int) -> Contact:
        return Contact(
            account=account,
            display_name=fingerprint_of(account)[:9],
            state=state,
            created_at=now,
            updated_at=now,
        )


def with_state(contact: Contact, state: ContactState, now: int) -> Contact:
    return dataclasses.replace(contact, state=state, updated_at=now)


#: A committed inbound message: (message, contact, new request, is request, added).
Outcome = tuple[Inbound, Contact | None, bool, bool, AddedMessage | None]
