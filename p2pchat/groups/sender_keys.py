"""Private groups' sender keys (mixed into :class:`p2pchat.groups.service.Groups`).

A sender key is handed to each member device inside the pairwise E2EE session, as hidden
DM content of type ``p2pchat/group-key``; after a removal or a ban the engine asks for a
new epoch, and the new keys go only to the members that remain. Our sending state is
stored (sealed) before any message encrypted with it leaves, and what we decrypt is kept
(sealed under the local key): the forward-secret chains cannot decrypt it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.group import GroupKeyring, GroupSession, InboundGroupSession
from p2pchat_crypto.identity import Device
from p2pchat_crypto.sealed import Rng

from ..dm.service import DirectMessages
from ..errors import (
    LocalProtocolError,
    PermissionDeniedError,
    WireError,
)
from ..identity.local_keys import LocalKeys
from ..protocol.codec import Struct
from ..protocol.content import Content
from ..protocol.group_engine import GroupEngine
from ..protocol.group_events import (
    InnerEvent,
    Sealed,
    decode_event,
)
from ..protocol.group_log import GroupError, StoredEvent
from ..storage.base import Store

__all__ = ["GROUP_KEY_CONTENT_TYPE", "SenderKeys"]

logger = logging.getLogger(__name__)

GROUP_KEY_CONTENT_TYPE = "p2pchat/group-key"
_KEYRING_KIND = "p2pchat/group-keyring"
_PLAIN_KIND = "p2pchat/group-plaintext"
#: Store meta key prefix of a sealed event's stored plaintext (+ the event id in hex).
_PLAIN_META = "group-plain:"
#: Bounds on sender keys held until their device is known (memory, per peer abuse).
_HELD_KEY_GROUPS = 64
_HELD_KEYS_PER_GROUP = 256


class SenderKeys:
    """Sender-key distribution, decryption of sealed events, and their persistence."""

    _engines: dict[bytes, GroupEngine]
    _archived: dict[bytes, GroupEngine]
    _keyrings: dict[bytes, GroupKeyring]
    _undecrypted: dict[bytes, set[bytes]]
    _held_keys: dict[bytes, list[tuple[bytes, InboundGroupSession]]]
    _lock: trio.Lock
    _device: Device
    _account: bytes
    _store: Store
    _dm: DirectMessages
    _keys: LocalKeys
    _clock: Callable[[], int]
    _rng: Rng

    def _announce(self, group_id: bytes, stored: StoredEvent) -> None:
        raise NotImplementedError

    def engine(self, group_id: bytes) -> GroupEngine:
        raise NotImplementedError

    async def _new_epoch(self, group_id: bytes, epoch: int, recipients: tuple[bytes, ...]) -> None:
        if group_id not in self._engines:
            return  # removed (the effects of one result may follow our own removal)
        keyring = self._keyrings.setdefault(group_id, GroupKeyring())
        outbound = keyring.outbound(group_id)
        if outbound is not None and outbound.epoch >= epoch:
            return
        session = GroupSession.create(group_id, epoch, self._device.public_key, self._rng)
        keyring.set_outbound(session)
        keyring.add_inbound(InboundGroupSession.from_distribution(session.distribution_message()))
        keyring.retire_epochs_before(group_id, epoch, now=self._clock())
        await self._save_keyring(group_id)
        await self._send_sender_key(group_id, recipients)

    async def _send_sender_key(self, group_id: bytes, recipients: tuple[bytes, ...]) -> None:
        keyring = self._keyrings.get(group_id)
        outbound = None if keyring is None else keyring.outbound(group_id)
        engine = self._engines.get(group_id)
        if outbound is None or engine is None:
            return  # no keys to give out, or we are no longer in the group
        accounts = engine.member_devices()
        content = Content(
            type=GROUP_KEY_CONTENT_TYPE,
            body={"g": group_id, "dist": outbound.distribution_message()},
            text="",
        )
        # To every current device of each account (our own other devices too: fan-out,
        # devices.md section 7); a device its account revoked is no target of the DMs.
        for account in sorted({accounts[d] for d in recipients if d in accounts}):
            await self._dm.send_hidden(account, content)

    async def _on_group_key_from(self, account: bytes, device: bytes, content: Content) -> None:
        await self._on_group_key(account, content)

    async def _on_group_key(self, account: bytes, content: Content) -> None:
        group_id, dist = content.body.get("g"), content.body.get("dist")
        if not isinstance(group_id, bytes) or not isinstance(dist, bytes):
            raise WireError("bad-value", "a group key needs g and dist")
        try:
            inbound = InboundGroupSession.from_distribution(dist)
        except CryptoError as exc:
            raise WireError("bad-value", f"bad sender key: {type(exc).__name__}") from None
        engine = self._engines.get(group_id)
        owner = None if engine is None else engine.log.devices().get(inbound.sender)
        if owner is None:
            # The key may outrun the sender's first event (gossip is lossy, DMs are
            # retried), or our own group may not be loaded yet. The DM is acknowledged
            # either way and never comes again: hold the key until the log says whose it
            # is. (A device that has since left keeps its key: its earlier posts are
            # still to be read.)
            self._hold_key(group_id, account, inbound)
            return
        if owner != account:
            raise WireError("wrong-sender", "sender key of a device the account does not own")
        async with self._lock:
            await self._add_inbound(group_id, inbound)

    def _hold_key(self, group_id: bytes, account: bytes, inbound: InboundGroupSession) -> None:
        if group_id not in self._held_keys and len(self._held_keys) >= _HELD_KEY_GROUPS:
            return
        held = self._held_keys.setdefault(group_id, [])
        if len(held) < _HELD_KEYS_PER_GROUP:
            held.append((account, inbound))

    async def _release_held_keys(self, group_id: bytes) -> None:
        """Add the held sender keys whose device the log now knows (call under the lock);
        drop those that belong to another account, keep the rest waiting."""
        held, engine = self._held_keys.get(group_id), self._engines.get(group_id)
        if not held or engine is None:
            return
        devices = engine.log.devices()
        waiting = []
        for account, inbound in held:
            owner = devices.get(inbound.sender)
            if owner is None:
                waiting.append((account, inbound))
            elif owner == account:
                await self._add_inbound(group_id, inbound)
        self._held_keys[group_id] = waiting

    async def _add_inbound(self, group_id: bytes, inbound: InboundGroupSession) -> None:
        keyring = self._keyrings.setdefault(group_id, GroupKeyring())
        if keyring.add_inbound(inbound):
            await self._save_keyring(group_id)
            await self._decrypt_pending(group_id)

    async def _decrypt_pending(self, group_id: bytes, *, announce: bool = True) -> None:
        """Decrypt the sealed events whose key has arrived, and tell the app of each one
        then: once, with its text (an event we can never read is never announced)."""
        pending = self._undecrypted.get(group_id)
        keyring = self._keyrings.get(group_id)
        if not pending or keyring is None:
            return
        engine = self.engine(group_id)  # also a closed group: what was sent before, we read
        # Bytes not in memory (stored already) are read from the store.
        unheld = [i for i in sorted(pending) if engine.event_bytes(i) is None]
        in_store = await self._store.group_event_data(group_id, unheld) if unheld else {}
        for event_id in sorted(pending):
            data = engine.event_bytes(event_id) or in_store.get(event_id)
            body = None if data is None else decode_event(data).parsed
            if not isinstance(body, Sealed):
                pending.discard(event_id)
                continue
            try:
                received = keyring.decrypt(body.ciphertext)
                inner = InnerEvent.from_bytes(received.plaintext, max_size=1 << 17)
                engine.provide_plaintext(event_id, inner)
                await self._remember_plaintext(event_id, inner)
            except CryptoError:
                continue  # no key yet (or never for us: sent before we joined)
            except (WireError, LocalProtocolError) as exc:
                logger.info("dropped an undecodable sealed event: %s", exc)
            pending.discard(event_id)
            stored = engine.log.get(event_id)
            if stored is not None and announce:
                self._announce(group_id, stored)
        await self._save_keyring(group_id)

    async def _remember_plaintext(self, event_id: bytes, inner: InnerEvent) -> None:
        """Keep a readable copy (sealed under the local key): the message key that
        decrypted it is gone, by design, once the keyring is saved."""
        blob = self._keys.seal_blob(_PLAIN_KIND, inner.to_bytes())
        await self._store.put_meta(_PLAIN_META + event_id.hex(), blob)

    async def _save_keyring(self, group_id: bytes) -> None:
        keyring = self._keyrings.get(group_id)
        if keyring is not None:
            blob = self._keys.seal_blob(_KEYRING_KIND, keyring.to_bytes())
            await self._store.set_group_keyring(group_id, blob)

    async def _author_sealed(
        self, group_id: bytes, engine: GroupEngine, body: Struct, now: int
    ) -> bytes:
        keyring = self._keyrings.get(group_id)
        outbound = None if keyring is None else keyring.outbound(group_id)
        if outbound is None or outbound.epoch != engine.state.epoch:
            await self._new_epoch(group_id, engine.state.epoch, tuple(engine.member_devices()))
            keyring = self._keyrings[group_id]
            outbound = keyring.outbound(group_id)
            assert outbound is not None
        inner = InnerEvent(kind=body.KIND, body=body.to_value())  # type: ignore[attr-defined]
        ciphertext = outbound.encrypt(inner.to_bytes())
        await self._save_keyring(group_id)  # the chain index is stored before it is used
        try:
            data = engine.author(
                Sealed(ciphertext=ciphertext), device=self._device, now=now, plaintext=inner
            )
        except (GroupError, WireError) as exc:
            raise PermissionDeniedError(f"the group refuses that: {exc}") from None
        await self._remember_plaintext(decode_event(data).event_id, inner)
        return data
