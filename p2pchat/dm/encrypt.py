"""The outbox worker's encryption step: a plaintext outbox entry becomes one frame per
device (fan-out, protocol-spec/devices.md section 7).

An entry whose device is known is encrypted with the latest session to that device, or
with a new X3DH session from the device's prekey bundle. An entry whose devices were not
known when it was queued (``destination_device`` None) is *expanded*: the account's
device list is resolved, and the entry is replaced, in one transaction, by one encrypted
entry per device. Sessions and frames are stored before any byte leaves the node, so a
frame is encrypted exactly once.

:class:`Encrypting` is a base of :class:`~p2pchat.dm.outbox.Outbox`; the DM driver owns
the state declared here.
"""

from __future__ import annotations

import logging
from collections import Counter

import trio

from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.identity import Device
from p2pchat_crypto.ratchet import Session, is_initial_message
from p2pchat_crypto.sealed import Rng

from ..config import DeliveryConfig
from ..errors import NetworkError, NotFoundError
from ..identity.directory import Directory
from ..protocol.dm_messages import DmInit, DmMessage
from ..protocol.envelope import seal
from ..storage.base import Transaction
from ..storage.records import (
    DeliveryState,
    DeviceDelivery,
    NewOutboxItem,
    OutboxItem,
)
from .fanout import DeviceTargets
from .receive import Receiving
from .sessions import SessionKey

__all__ = ["OUTBOX_KIND", "Encrypting"]

logger = logging.getLogger(__name__)

#: The sealed-pickle kind of an outbox entry's frame.
OUTBOX_KIND = "p2pchat/outbox-entry"


class Encrypting(Receiving):
    """Encrypting outbox entries, per device (see the module docstring)."""

    _device: Device
    _config: DeliveryConfig
    _directory: Directory
    _rng: Rng
    _wakeup: trio.Event
    _backoff_base: dict[int, int]
    _plaintext_items: Counter[tuple[bytes, bytes | None]]
    targets: DeviceTargets

    async def _latest_session(
        self, account: bytes, device: bytes
    ) -> tuple[SessionKey, Session] | None:
        """The session to encrypt with: the device's most recently stored one."""
        latest = self._sessions.latest(account, device)
        if latest is not None:
            return latest
        records = await self._store.list_sessions(account, device=device)
        if not records:
            return None
        key = (account, device, records[0].session_id)
        return key, self._sessions.get(key) or self._keys.open_session(records[0].pickle)

    def _dm_frame(self, message_id: bytes, wire: bytes, now: int) -> bytes:
        message: DmInit | DmMessage
        if is_initial_message(wire):
            message = DmInit(id=message_id, x3dh=wire)
        else:
            message = DmMessage(id=message_id, ratchet=wire)
        return seal(message, signing_key=self._signing_key, now=now)

    def _is_plaintext(self, item: OutboxItem) -> bool:
        """Whether the worker still has to encrypt ``item``."""
        entry = self._keys.open_blob(OUTBOX_KIND, item.payload)
        return not (isinstance(entry, dict) and isinstance(entry.get("frame"), bytes))

    async def _session_for(
        self, account: bytes, device: bytes, plaintext: bytes, now: int
    ) -> tuple[Session, bytes]:
        """Encrypt ``plaintext`` for ``device``: (the advanced or new session, its wire)."""
        latest = await self._latest_session(account, device)
        try:
            if latest is not None:
                session = latest[1]
                return session, session.encrypt(plaintext, self._rng)
            bundle = await self._directory.bundle_of_device(device, account_key=account)
            session, initial = Session.initiate(
                self._account,
                bundle,
                self._rng,
                now=now,
                device=self._device,
                plaintext=plaintext,
                their_account_key=account,
            )
            return session, initial.encode()
        except CryptoError as exc:
            if latest is not None:
                self._sessions.forget(latest[0])
            raise NotFoundError(f"cannot start an encrypted session: {exc}") from exc

    async def _encrypt(self, item: OutboxItem, plaintext: bytes) -> tuple[OutboxItem, bytes]:
        """Encrypt once (per device); store sessions and frames together before anything
        is sent. Returns the (first) encrypted entry and its frame; the entries of an
        expansion's other devices go out in the worker's next round."""
        account = item.destination_account
        if item.destination_device is None:
            devices = None if self.targets.stale(account) else self.targets.known(account)
            if devices is None:  # look the list up (a device linked or revoked since)
                with trio.move_on_after(self._config.ack_timeout_ms / 1000):
                    devices, revoked = await self.targets.resolve(account)
                    for device in revoked:
                        await self.drop_device(account, device)
            if devices is None:  # the DHT is slow: the devices known so far
                devices = self.targets.known(account)
                if devices is None:
                    raise NotFoundError("account not found: the DHT did not answer in time")
        else:
            devices = (item.destination_device,)
        async with self._account_locks[account]:
            now = self._clock()
            assert item.message_id is not None
            sealed: list[tuple[SessionKey, Session, NewOutboxItem]] = []
            frames: list[bytes] = []
            problems: list[str] = []
            try:
                for device in devices:
                    try:
                        session, wire = await self._session_for(account, device, plaintext, now)
                    except (NetworkError, NotFoundError) as exc:
                        if len(devices) == 1:
                            raise
                        problems.append(str(exc))  # another device may take it
                        continue
                    frame = self._dm_frame(item.message_id, wire, now)
                    entry = NewOutboxItem(
                        destination_account=account,
                        destination_device=device,
                        conversation_id=item.conversation_id,
                        message_id=item.message_id,
                        payload=self._keys.seal_blob(OUTBOX_KIND, {"frame": frame}),
                        created_at=item.created_at,
                    )
                    sealed.append(((account, device, session.session_id), session, entry))
                    frames.append(frame)
                if not sealed:
                    raise NotFoundError("; ".join(problems) or "the account has no device")
                records = [self._session_record(key, s, now) for key, s, _ in sealed]
                queued = [
                    DeviceDelivery(
                        message_id=item.message_id,
                        device=key[1],
                        state=DeliveryState.QUEUED,
                        updated_at=now,
                    )
                    for key, _, _ in sealed
                ]
                expanded = item.destination_device is None and item.conversation_id is not None

                async def unit(tx: Transaction) -> list[OutboxItem]:
                    for record in records:
                        await tx.put_session(record)
                    if not await tx.remove_outbox(item.item_id):
                        raise NotFoundError("the message was cancelled")
                    if expanded:
                        for delivery in queued:
                            await tx.set_device_delivery(delivery)
                    return [await tx.add_outbox(entry) for _, _, entry in sealed]

                new_items = await self._store.atomically(unit)
            except BaseException:
                for key, _, _ in sealed:
                    self._sessions.forget(key)
                raise
            for key, session, _ in sealed:
                self._sessions.stored(key, session)
                self._device_accounts[key[1]] = account
            self._backoff_base.pop(item.item_id, None)
            self._plaintext_items[account, item.destination_device] -= 1
            if len(new_items) > 1:
                self._wakeup.set()
            return new_items[0], frames[0]

    async def drop_device(self, account: bytes, device: bytes) -> None:
        """``device`` was revoked by ``account``: it is never a target again, its sessions
        are deleted and what waits for it in the outbox fails (per device)."""
        self.targets.revoked.add(device)
        self._sessions.forget_device(account, device)
        now = self._clock()
        waiting = [
            i
            for i in await self._store.due_outbox(2**62, limit=2**31)
            if i.destination_device == device
        ]
        records = await self._store.list_sessions(account, device=device)

        async def unit(tx: Transaction) -> None:
            for record in records:
                await tx.delete_session(account, device, record.session_id)
            for waiting_item in waiting:
                await tx.remove_outbox(waiting_item.item_id)
                if waiting_item.message_id is not None and waiting_item.conversation_id:
                    await tx.set_device_delivery(
                        DeviceDelivery(
                            message_id=waiting_item.message_id,
                            device=device,
                            state=DeliveryState.FAILED,
                            reason="the device was revoked",
                            updated_at=now,
                        )
                    )

        await self._store.atomically(unit)
        for waiting_item in waiting:
            self._backoff_base.pop(waiting_item.item_id, None)
            if self._is_plaintext(waiting_item):
                self._plaintext_items[account, device] -= 1
        self._device_accounts.pop(device, None)
        self.stats["devices_dropped"] += 1
