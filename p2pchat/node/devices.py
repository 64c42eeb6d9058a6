"""The device half of the embedding API (mixed into :class:`p2pchat.node.Node`): the
devices of our account, link codes for new ones, renaming and revoking
(protocol-spec/devices.md). Joining an account happens before a node runs:
:func:`p2pchat.devices.join_account`."""

from __future__ import annotations

import trio

from ..devices import DeviceInfo, DeviceService, LinkInvite
from ..errors import LocalProtocolError
from ..protocol.device_link import LINK_TTL_MS, JoinRequest

__all__ = ["DevicesApi"]


class DevicesApi:
    """List, link, confirm, rename and revoke the devices of our account."""

    _devices: DeviceService | None

    def _check(self) -> None:
        raise NotImplementedError

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
