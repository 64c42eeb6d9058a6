"""The contact half of the embedding API (mixed into :class:`p2pchat.node.Node`).

Contacts are people by account key: added (by key or by a peer id whose prekey bundle
names the account), accepted, declined, blocked, renamed, verified and removed. Names
pick whom you write to, so no two contacts share one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from p2pchat_crypto.identity import fingerprint_of

from ..config import NodeConfig
from ..dm.mailbox import Mailbox
from ..dm.service import DirectMessages
from ..errors import ConfigError, NotFoundError
from ..events import ContactChanged, EventBus
from ..identity.directory import Directory
from ..identity.peerid import peer_id_to_key
from ..protocol.dm_messages import ContactAccept, ContactDecline
from ..qr import CONTACT_PREFIX
from ..storage.base import Store
from ..storage.records import Contact, ContactState

__all__ = ["ContactsApi", "parse_account"]


def parse_account(text: str | bytes) -> bytes:
    """An account key from its 64-hex-digit form (what ``p2pchat keys show`` prints), or
    a contact link (``p2pchat-contact:`` and those digits)."""
    if isinstance(text, bytes):
        if len(text) != 32:
            raise ConfigError("an account key is 32 bytes")
        return text
    cleaned = text.strip().replace(" ", "").lower().removeprefix(CONTACT_PREFIX)
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(
            "not an account key: expected 64 hex digits (see `p2pchat keys show` on their side)"
        )
    return key


class ContactsApi:
    """Add, accept, decline, block, rename, verify and remove contacts."""

    _clock: Callable[[], int]
    _config: NodeConfig
    _events: EventBus
    _mailbox: Mailbox
    _directory: Directory | None

    def _check(self) -> None:
        raise NotImplementedError

    def claimed_name_of(self, account: bytes) -> str | None:
        """The name ``account``'s profile gives (``node/profiles.py``, earlier in the MRO)."""
        raise NotImplementedError

    async def send_profile(self, account: bytes) -> None:
        """Sends our profile to ``account`` (``node/profiles.py``, earlier in the MRO)."""
        raise NotImplementedError

    @property
    def _s(self) -> Store:
        raise NotImplementedError

    @property
    def _dms(self) -> DirectMessages:
        raise NotImplementedError

    @property
    def account_key(self) -> bytes:
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        raise NotImplementedError

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError

    async def add_contact(self, address: str | bytes, *, name: str | None = None) -> Contact:
        """Add (and consent to) a contact by account key, or by a peer id whose prekey
        bundle in the DHT names the account."""
        if isinstance(address, str) and address.startswith(("12D3Koo", "Qm")):
            try:
                device = peer_id_to_key(address)
            except ValueError:
                raise ConfigError("not a valid Ed25519 peer id") from None
            assert self._directory is not None
            self._check()
            bundle = await self._directory.bundle_of_device(device)
            account = bundle.identity.account_key
        else:
            account = parse_account(address)
        if account == self.account_key:
            raise ConfigError("that is your own account")
        now = self._clock()
        existing = await self._s.get_contact(account)
        if (
            existing is not None
            and name is not None
            and existing.state in (ContactState.ACCEPTED, ContactState.BLOCKED)
            and name.strip() != existing.display_name
        ):
            raise ConfigError(
                f"that account is already your contact {existing.display_name!r}; "
                "to change the name use `p2pchat contacts rename`"
            )
        if name is not None:
            name = await self._free_name(name, account)
        display = name or (existing.display_name if existing else fingerprint_of(account)[:9])
        state = ContactState.ACCEPTED
        contact = Contact(
            account=account,
            display_name=display,
            state=state,
            verified=existing.verified if existing else False,
            claimed_name=existing.claimed_name if existing else self.claimed_name_of(account),
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        await self._s.put_contact(contact)
        self._events.publish(ContactChanged(account=account, state=state.value))
        await self._mailbox.announce_to(account)
        await self.send_profile(account)
        return contact

    async def contacts(self, *, state: ContactState | None = None) -> list[Contact]:
        return await self._s.list_contacts(state=state)

    async def contact_requests(self) -> list[Contact]:
        return await self._s.list_contacts(state=ContactState.REQUESTED_IN)

    async def _set_contact_state(self, account: bytes, state: ContactState) -> Contact:
        contact = await self._s.get_contact(account)
        if contact is None:
            raise NotFoundError("no such contact or request")
        updated = dataclasses.replace(contact, state=state, updated_at=self._clock())
        await self._s.put_contact(updated)
        self._events.publish(ContactChanged(account=account, state=state.value))
        return updated

    async def accept_contact(self, account: bytes) -> Contact:
        contact = await self._set_contact_state(account, ContactState.ACCEPTED)
        await self._mailbox.announce_to(account)
        await self.send_profile(account)
        name = self._config.display_name or self.fingerprint[:9]
        self._spawn(
            self._dms.send_control,
            account,
            ContactAccept(request_id=bytes(16), account=self.account_key, name=name),
        )
        return contact

    async def decline_contact(self, account: bytes) -> Contact:
        contact = await self._set_contact_state(account, ContactState.DECLINED)
        self._spawn(self._dms.send_control, account, ContactDecline(request_id=bytes(16)))
        return contact

    async def block_contact(self, account: bytes) -> Contact:
        """Blocked accounts' frames are dropped before any expensive work."""
        if await self._s.get_contact(account) is None:
            now = self._clock()
            await self._s.put_contact(
                Contact(
                    account=account,
                    display_name=fingerprint_of(account)[:9],
                    state=ContactState.BLOCKED,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._events.publish(ContactChanged(account=account, state="blocked"))
            contact = await self._s.get_contact(account)
            assert contact is not None
            return contact
        return await self._set_contact_state(account, ContactState.BLOCKED)

    async def unblock_contact(self, account: bytes) -> Contact:
        return await self._set_contact_state(account, ContactState.ACCEPTED)

    async def _free_name(self, name: str, account: bytes) -> str:
        """``name`` stripped, if no *other* contact uses it (names pick whom you write to)."""
        cleaned = name.strip()
        if not cleaned:
            raise ConfigError("a contact's name cannot be empty")
        for other in await self._s.list_contacts():
            if other.account != account and other.display_name.casefold() == cleaned.casefold():
                raise ConfigError(
                    f"another contact is already named {other.display_name!r} "
                    f"({fingerprint_of(other.account)[:9]}); choose another name"
                )
        return cleaned

    async def rename_contact(self, account: bytes, name: str) -> Contact:
        contact = await self._s.get_contact(account)
        if contact is None:
            raise NotFoundError("no such contact")
        updated = dataclasses.replace(
            contact, display_name=await self._free_name(name, account), updated_at=self._clock()
        )
        await self._s.put_contact(updated)
        return updated

    async def verify_contact(self, account: bytes, *, verified: bool = True) -> Contact:
        """Record that the safety numbers were compared (and matched), or take it back."""
        contact = await self._s.get_contact(account)
        if contact is None:
            raise NotFoundError("no such contact")
        updated = dataclasses.replace(contact, verified=verified, updated_at=self._clock())
        await self._s.put_contact(updated)
        return updated

    async def remove_contact(self, account: bytes) -> Contact:
        """Forget a contact (the conversation stays); they are a stranger again."""
        contact = await self._s.get_contact(account)
        if contact is None or not await self._s.delete_contact(account):
            raise NotFoundError("no such contact")
        self._events.publish(ContactChanged(account=account, state="removed"))
        return contact
