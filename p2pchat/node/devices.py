"""The device half of the embedding API (mixed into :class:`p2pchat.node.Node`): the
devices of our account, link codes for new ones, renaming and revoking
(protocol-spec/devices.md). Joining an account happens before a node runs:
:func:`p2pchat.devices.join_account`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import CryptoError

from ..devices import (
    ADOPT_META,
    LINK_HISTORY_META,
    DeviceInfo,
    DeviceService,
    LinkInvite,
    load_link_history,
)
from ..devices.history import HistoryAsk, HistoryResult, HistorySync
from ..dm.fanout import TARGETS_TTL_MS
from ..dm.service import DirectMessages
from ..dm.storing import dm_conversation_id
from ..errors import LocalProtocolError, NetworkError, P2PChatError, PermissionDeniedError
from ..events import EventBus
from ..groups.service import Groups
from ..identity.directory import Directory
from ..identity.keystore import UnlockedIdentity
from ..net.base import Network
from ..protocol.device_history import MAX_HISTORY_MESSAGES
from ..protocol.device_link import LINK_TTL_MS, JoinRequest
from ..protocol.device_list import current_devices, revoked_devices
from ..protocol.device_sync import (
    MAX_SYNC_CONTACTS,
    MAX_SYNC_GROUPS,
    SyncContact,
    SyncContent,
    SyncGroup,
)
from ..protocol.revocation import Revocation
from ..storage.base import Store
from ..storage.records import GroupStatus

logger = logging.getLogger(__name__)
#: How often a new device tries to join a synced group before leaving it for the next start.
_ADOPT_ATTEMPTS = 3

__all__ = ["DevicesApi"]


class DevicesApi:
    """List, link, confirm, rename and revoke the devices of our account."""

    _devices: DeviceService | None
    _store: Store | None
    _groups: Groups
    _dm: DirectMessages | None
    _history: HistorySync | None
    _directory: Directory | None
    _network: Network | None
    _rng: Callable[[int], bytes]
    _events: EventBus

    def _check(self) -> None:
        raise NotImplementedError

    async def _collect_sync(self) -> SyncContent:
        """What a newly linked device receives: contacts, and our active groups (with an
        invite for our own account where the group is not open to all)."""
        assert self._store is not None
        contacts = tuple(
            SyncContact(
                account=c.account,
                name=c.display_name[:256],
                state=str(c.state),
                verified=c.verified,
            )
            for c in (await self._store.list_contacts())[:MAX_SYNC_CONTACTS]
        )
        groups: list[SyncGroup] = []
        for info in await self._store.list_groups(status=GroupStatus.ACTIVE):
            if len(groups) >= MAX_SYNC_GROUPS:
                break
            invite = None
            try:
                if self._groups.engine(info.group_id).descriptor.rules.join != "open":
                    account = self._dev().account_key
                    invite = await self._groups.invite(info.group_id, uses=1, account=account)
            except P2PChatError as exc:
                logger.info("group %s not synced to the new device: %s", info.group_id.hex(), exc)
                continue
            groups.append(SyncGroup(group=info.group_id, invite=invite))
        return SyncContent(contacts=contacts, groups=tuple(groups))

    async def _adopt_groups(self) -> None:
        """A new device joins the groups synced to it (kept in the store until joined)."""
        assert self._store is not None
        data = await self._store.get_meta(ADOPT_META)
        if data is None:
            return
        try:
            pending = [w for w in cbor.decode(data, max_size=1 << 20) if isinstance(w, str)]
        except (CryptoError, TypeError):
            pending = []
        for attempt in range(_ADOPT_ATTEMPTS):
            if attempt:
                await trio.sleep(5 * attempt)
            left = []
            for what in pending:
                try:
                    await self._groups.join(what)
                except NetworkError as exc:
                    logger.info("joining a synced group failed (will retry): %s", exc)
                    left.append(what)
                except P2PChatError as exc:
                    logger.warning("could not join a synced group: %s", exc)
            pending = left
            if not pending:
                break
        if pending:
            await self._store.put_meta(ADOPT_META, cbor.encode(pending))
        else:
            await self._store.delete_meta(ADOPT_META)

    async def _history_at_link(self) -> None:
        """A device linked with ``--history`` asks the device it linked through for our
        direct-message history once it runs (that device's user consents there). The ask
        stays in the store until that device answered (sent it, refused, or let it time
        out), so a device not reachable now is asked again at the next start."""
        assert self._store is not None
        if await self._store.get_meta(LINK_HISTORY_META) is None:
            return  # the usual start: nothing asked
        wanted = await load_link_history(self._store)
        if wanted is None:
            await self._store.delete_meta(LINK_HISTORY_META)  # unreadable: dropped
            return
        for attempt in range(_ADOPT_ATTEMPTS):
            if attempt:
                await trio.sleep(5 * attempt)
            try:
                result = await self.sync_history(
                    wanted.device, since=wanted.since, max_messages=wanted.max
                )
            except NetworkError as exc:
                logger.info("asking for the history failed (will retry): %s", exc)
                continue
            except PermissionDeniedError as exc:
                logger.warning("%s; ask again with `p2pchat devices history-sync`", exc)
            except P2PChatError as exc:
                logger.warning("the history did not come: %s", exc)
            else:
                logger.info("history copied: %d messages", result.received)
            await self._store.delete_meta(LINK_HISTORY_META)
            return

    def _wire_fanout(self, account: bytes) -> None:
        """Our other devices get a copy of what we send; a revoked one gets nothing more."""
        devices, dm = self._devices, self._dm
        assert devices is not None
        assert dm is not None
        dm.targets.own_devices = lambda: current_devices(devices.device_list())
        dm.targets.revoked.update(revoked_devices(devices.device_list()))

        async def revoked(revocation: Revocation) -> None:
            await dm.drop_device(account, revocation.device)
            groups: Groups | None = getattr(self, "_groups", None)  # set once groups run
            if groups is not None:
                await groups.revoke_device(revocation)

        devices.on_revoked = revoked

    def _start_history(self, identity: UnlockedIdentity) -> None:
        """Serve and pull direct-message history between our devices (devices.md 4.4)."""
        devices, directory, network, store = (
            self._devices,
            self._directory,
            self._network,
            self._store,
        )
        assert devices is not None
        assert directory is not None
        assert network is not None
        assert store is not None
        this = identity.device.public_key

        def own_device(key: bytes) -> bool:
            return key != this and key in current_devices(devices.device_list())

        async def locate(key: bytes) -> tuple[str, ...]:
            info = await directory.locate(key)
            return tuple(info.addrs) if info is not None else ()

        self._history = HistorySync(
            account=identity.account.account_key,
            device=this,
            device_seed=identity.device.signing_seed,
            store=store,
            network=network,
            events=self._events,
            rng=self._rng,
            own_device=own_device,
            locate=locate,
            dm_conversation_id=dm_conversation_id,
        )
        self._history.start()

    def _hist(self) -> HistorySync:
        self._check()
        if self._history is None:
            raise LocalProtocolError("the node is not running")
        return self._history

    async def sync_history(
        self, device: bytes, *, since: int = 0, max_messages: int = MAX_HISTORY_MESSAGES
    ) -> HistoryResult:
        """Ask ``device`` (another of ours) for our direct-message history since ``since``
        (ms; 0: all), at most ``max_messages``; resumes an interrupted sync of the same
        window. Its user must consent. ``device.history_progress`` events follow."""
        return await self._hist().pull(device, since=since, max_messages=max_messages)

    def pending_history(self) -> HistoryAsk | None:
        return self._hist().pending()

    def confirm_history(self, accept: bool) -> HistoryAsk:
        """Send (or refuse) the history a device of ours asked for."""
        return self._hist().confirm(accept)

    async def _devices_loop(self) -> None:
        """Merge our account's device list every minute: a device revoked (or linked) by
        another of our devices stops (or starts) getting copies of what we send."""
        devices = self._devices
        assert devices is not None
        while True:
            await trio.sleep(TARGETS_TTL_MS / 1000)
            if len(devices.device_list().devices) < 2:
                continue  # our only device: every link and revocation happens here
            with trio.move_on_after(TARGETS_TTL_MS / 2000):
                await devices.refresh()

    def _dev(self) -> DeviceService:
        self._check()
        if self._devices is None:
            raise LocalProtocolError("the node is not running")
        return self._devices

    def devices(self) -> list[DeviceInfo]:
        """Current devices (this one first), then revoked ones."""
        return self._dev().devices()

    def link_device(self, *, ttl_ms: int = LINK_TTL_MS) -> LinkInvite:
        """A one-time link code for a new device (replaces an unused earlier one).

        When a device uses it, a ``device.link_request`` event carries the confirmation
        code; :meth:`confirm_link` answers it."""
        return self._dev().link(ttl_ms=min(max(ttl_ms, 10_000), LINK_TTL_MS))

    def pending_link(self) -> JoinRequest | None:
        return self._dev().pending()

    def confirm_link(self, accept: bool) -> JoinRequest:
        """Accept (the confirmation codes match) or refuse the device waiting to link."""
        return self._dev().confirm(accept)

    async def rename_device(self, device: bytes, name: str) -> DeviceInfo:
        return await self._dev().rename(device, name)

    async def revoke_device(self, device: bytes) -> DeviceInfo:
        """Revoke a device of our account and publish the new device list."""
        return await self._dev().revoke(device)

    async def refresh_devices(self, *, within_s: float = 5.0) -> list[DeviceInfo]:
        """Merge the account's device list from the DHT (for at most ``within_s``), then
        list; a slow DHT leaves the list as this device knows it."""
        with trio.move_on_after(within_s):
            await self._dev().refresh()
        return self._dev().devices()
