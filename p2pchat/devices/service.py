"""The existing device's side of multi-device accounts: our device list, link offers served
on ``/p2pchat/link/1.0.0``, renaming and revoking (protocol-spec/devices.md).

A thin trio loop around :class:`~p2pchat.protocol.device_link.LinkOffer`: one offer at a
time (a new ``link`` replaces it); a valid join waits for the user to compare the
confirmation code (:meth:`DeviceService.confirm`) for at most two minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..errors import (
    ConfigError,
    LocalProtocolError,
    NetworkError,
    NotFoundError,
    P2PChatError,
    PermissionDeniedError,
    WireError,
)
from ..events import DeviceLinked, DeviceLinkRequest, DeviceRevoked, EventBus
from ..identity.directory import Directory
from ..identity.keystore import UnlockedIdentity
from ..identity.peerid import peer_id_to_key
from ..net.base import FramedStream, Network
from ..protocol.device_link import (
    LINK_PROTOCOL,
    LINK_TTL_MS,
    MAX_LINK_FRAME,
    JoinRequest,
    LinkOffer,
)
from ..protocol.device_list import (
    add_device,
    merge_lists,
    revoke_device,
    revoked_devices,
    single_device_list,
)
from ..protocol.device_sync import LinkSync, SyncContent
from ..protocol.records import DeviceEntry, DeviceListRecord
from ..protocol.revocation import Revocation
from ..protocol.signing import ExternalSigner
from ..storage.base import Store
from .roster import DeviceInfo, describe, load_list, load_names, save_list, save_names

__all__ = ["DeviceService", "LinkInvite", "CONFIRM_TIMEOUT_S"]

logger = logging.getLogger(__name__)

#: How long a join waits for the user to compare the codes.
CONFIRM_TIMEOUT_S = 120.0
#: How long we wait for each frame of the new device.
_FRAME_TIMEOUT_S = 30.0
_MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class LinkInvite:
    """A link code to show on this device (text and QR), valid until ``expires``."""

    code: str
    expires: int

    def __repr__(self) -> str:
        return f"<LinkInvite expires={self.expires}>"


@dataclass
class _Pending:
    request: JoinRequest
    decided: trio.Event
    accept: bool = False


class DeviceService:
    """See the module docstring. :meth:`start` before the node is discoverable."""

    def __init__(
        self,
        *,
        identity: UnlockedIdentity,
        store: Store,
        network: Network,
        events: EventBus,
        clock: Callable[[], int],
        rng: Callable[[int], bytes],
        collect_sync: Callable[[], Awaitable[SyncContent]] | None = None,
    ) -> None:
        """``collect_sync``: what a new device receives after linking (contacts, groups)."""
        self._identity = identity
        self._collect_sync = collect_sync
        self._store = store
        self._network = network
        self._events = events
        self._clock = clock
        self._rng = rng
        self._signer = ExternalSigner(identity.account.account_key, identity.account.sign)
        self._device = identity.device.public_key
        entry = DeviceEntry(device=self._device, cert=identity.device.certificate.encode())
        self._entry = entry
        self._list: DeviceListRecord = single_device_list(entry)
        self._names: dict[bytes, str] = {}
        self._directory: Directory | None = None
        self._offer: LinkOffer | None = None
        self._pending: _Pending | None = None
        self._busy = False
        self._publishes = 0
        #: True once our own device appears revoked in the account's list.
        self.revoked = False
        #: Called with each other device of ours that is revoked (here or by another
        #: device): the node stops fanning messages out to it.
        self.on_revoked: Callable[[Revocation], Awaitable[None]] | None = None
        #: Called after this device linked or revoked a device and published the new
        #: list: the node tells its contacts at once (:mod:`p2pchat.dm.device_notice`).
        self.on_list_changed: Callable[[], Awaitable[None]] | None = None

    def __repr__(self) -> str:
        return f"<DeviceService devices={len(self._list.devices)} revoked={self.revoked}>"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, directory: Directory) -> None:
        """Load our list (a new account: this one device) and serve link streams."""
        self._directory = directory
        stored = await load_list(self._store)
        if stored is not None:
            self._list = stored
            if self._device in revoked_devices(stored):
                self.revoked = True
            elif self._device not in {e.device for e in stored.devices}:
                self._list = add_device(stored, self._entry)
                await save_list(self._store, self._list)
        self._names = await load_names(self._store)
        self._network.set_stream_handler(LINK_PROTOCOL, self._serve)

    @property
    def account_key(self) -> bytes:
        return self._identity.account.account_key

    def device_list(self) -> DeviceListRecord:
        """The list to publish (the directory's provider)."""
        return self._list

    def _dir(self) -> Directory:
        if self._directory is None:
            raise LocalProtocolError("the device service is not started")
        return self._directory

    async def before_publish(self) -> None:
        """Merge before every publish but the first: at start our stored list is what we
        publish (nothing to merge yet), and the node's first DHT lookup waits until it is
        up (py-libp2p logs a missing value before the runner has quieted its logger)."""
        if self._publishes:
            await self.refresh()
        self._publishes += 1

    async def refresh(self) -> None:
        """Merge the account's list from the DHT into ours (devices.md section 2)."""
        theirs = await self._dir().device_list_of(self._identity.account.account_key)
        if theirs is None:
            return
        try:
            merged = merge_lists(self._list, theirs)
        except LocalProtocolError as exc:
            logger.warning("ignoring a device list that cannot be merged: %s", exc)
            return
        if merged == self._list:
            return
        newly_revoked = set(revoked_devices(merged)) - set(revoked_devices(self._list))
        revocations = {rev.device: rev for rev in merged.revoked or ()}
        self._list = merged
        await save_list(self._store, merged)
        for device in sorted(newly_revoked):
            this = device == self._device
            if this:
                self.revoked = True
                logger.warning("this device was revoked from its account")
            elif self.on_revoked is not None:
                await self.on_revoked(revocations[device])
            self._events.publish(DeviceRevoked(device=device, this_device=this))

    # -- queries --------------------------------------------------------------------------

    def devices(self) -> list[DeviceInfo]:
        return describe(self._list, self._names, this_device=self._device)

    def find(self, device: bytes) -> DeviceInfo:
        for info in self.devices():
            if info.device == device:
                return info
        raise NotFoundError("no such device in this account")

    async def rename(self, device: bytes, name: str) -> DeviceInfo:
        name = name.strip()
        if not name or len(name.encode()) > _MAX_NAME:
            raise ConfigError(f"a device name has 1 to {_MAX_NAME} bytes")
        self.find(device)
        self._names[device] = name
        await save_names(self._store, self._names)
        return self.find(device)

    # -- revoking -------------------------------------------------------------------------

    async def revoke(self, device: bytes) -> DeviceInfo:
        """Revoke ``device`` (signed by the account key) and publish the list."""
        if device == self._device:
            raise PermissionDeniedError(
                "a device cannot revoke itself: revoke it from another device of the account"
            )
        if self.revoked:
            raise PermissionDeniedError("this device was revoked: it cannot revoke others")
        try:
            await self.refresh()
        except NetworkError as exc:
            logger.info("revoking without the DHT's list (will merge later): %s", exc)
        if device not in {e.device for e in self._list.devices}:
            raise NotFoundError("no such current device in this account")
        self._list, revocation = revoke_device(
            self._list, device, now=self._clock(), signing_key=self._signer
        )
        await save_list(self._store, self._list)
        if self.on_revoked is not None:
            await self.on_revoked(revocation)
        await self._publish_list()
        await self._list_changed()
        self._events.publish(DeviceRevoked(device=device))
        return self.find(device)

    async def _send_sync(self, stream: FramedStream, offer: LinkOffer) -> None:
        """Contacts and group memberships for the new device (devices.md section 4.3)."""
        if self._collect_sync is None:
            return
        content = await self._collect_sync()
        box = offer.seal(content.to_bytes(), rng=self._rng)
        await stream.write_frame(LinkSync(t="sync", v=1, box=box).to_bytes())

    async def _publish_list(self) -> None:
        try:
            await self._dir().publish_device_list()
        except NetworkError as exc:  # the publish loop retries
            logger.info("publishing the device list failed (will retry): %s", exc)

    async def _list_changed(self) -> None:
        if self.on_list_changed is None:
            return
        try:
            await self.on_list_changed()
        except P2PChatError as exc:  # peers still find the list in the DHT
            logger.info("telling contacts of the new device list failed: %s", exc)

    # -- linking (the existing device) ----------------------------------------------------

    def link(self, *, ttl_ms: int = LINK_TTL_MS) -> LinkInvite:
        """A new one-time link code (replacing any earlier one that is not in use)."""
        if self.revoked:
            raise PermissionDeniedError("this device was revoked: it cannot link devices")
        if self._busy:
            raise PermissionDeniedError("a link is in progress: confirm or refuse it first")
        addrs = tuple(a for a in self._network.listen_addrs if "/p2p-circuit" not in a)
        self._offer = LinkOffer(
            device_key=self._device,
            addrs=addrs[:4],
            now=self._clock(),
            rng=self._rng,
            ttl_ms=ttl_ms,
        )
        return LinkInvite(code=self._offer.code.encode(), expires=self._offer.expires)

    def pending(self) -> JoinRequest | None:
        """The join waiting for :meth:`confirm`, if any."""
        return self._pending.request if self._pending is not None else None

    def confirm(self, accept: bool) -> JoinRequest:
        """Accept (the codes matched) or refuse the waiting join."""
        pending = self._pending
        if pending is None or pending.decided.is_set():
            raise NotFoundError("no new device is waiting for confirmation")
        pending.accept = accept
        pending.decided.set()
        return pending.request

    async def _serve(self, stream: FramedStream) -> None:
        offer = self._offer
        if offer is None or self._busy:
            await stream.write_frame(LinkOffer.deny_frame("expired" if offer is None else "busy"))
            return
        try:
            remote = peer_id_to_key(stream.remote_peer)
        except ValueError:
            raise WireError("wrong-sender", "the peer id holds no Ed25519 key") from None
        with trio.move_on_after(_FRAME_TIMEOUT_S):
            frame = await stream.read_frame(MAX_LINK_FRAME)
            if frame is None:
                return
            try:
                request = offer.receive_join(frame, remote_device=remote, now=self._clock())
            except WireError as exc:
                logger.info("refused a link join from %s: %s", stream.remote_peer, exc)
                await stream.write_frame(offer.deny(exc.reason))
                return
            self._busy = True
        if not self._busy:
            return
        try:
            await self._confirm_and_grant(stream, offer, request)
        finally:
            self._busy = False
            self._pending = None
            if offer.state != "waiting" and self._offer is offer:
                self._offer = None

    async def _confirm_and_grant(
        self, stream: FramedStream, offer: LinkOffer, request: JoinRequest
    ) -> None:
        pending = _Pending(request=request, decided=trio.Event())
        self._pending = pending
        self._events.publish(
            DeviceLinkRequest(device=request.device, name=request.name, confirm=request.confirm)
        )
        with trio.move_on_after(CONFIRM_TIMEOUT_S):
            await pending.decided.wait()
        if not pending.accept:
            await stream.write_frame(offer.deny("refused"))
            self._events.publish(
                DeviceLinked(device=request.device, name=request.name, refused=True)
            )
            return
        account = self._identity.account
        certificate = offer.certify(account, now=self._clock())
        try:
            devices = add_device(
                self._list, DeviceEntry(device=request.device, cert=certificate.encode())
            )
        except LocalProtocolError as exc:  # a full list, or a device revoked before
            logger.warning("cannot link that device: %s", exc)
            await stream.write_frame(offer.deny("revoked" if "revoked" in str(exc) else "full"))
            self._events.publish(
                DeviceLinked(device=request.device, name=request.name, refused=True)
            )
            return
        record = self._dir().sign_device_list(devices)
        grant = offer.grant(
            account=account, certificate=certificate, devices_record=record, rng=self._rng
        )
        self._list = devices
        self._names[request.device] = request.name
        await save_list(self._store, devices)
        await save_names(self._store, self._names)
        await stream.write_frame(grant)
        with trio.move_on_after(_FRAME_TIMEOUT_S):
            done = await stream.read_frame(MAX_LINK_FRAME)
            if done is not None:
                offer.receive_done(done)
                await self._send_sync(stream, offer)
        await self._publish_list()
        await self._list_changed()
        self._events.publish(DeviceLinked(device=request.device, name=request.name))
