"""Multi-device accounts (protocol-spec/devices.md): the device list of our account, linking a
new device (:mod:`.service` on the existing device, :mod:`.join` on the new one), renaming and
revoking. The link protocol itself is sans-IO in :mod:`p2pchat.protocol.device_link`."""

from .join import ADOPT_META, Joined, join_account, linked_identity, save_granted
from .roster import DeviceInfo
from .service import DeviceService, LinkInvite

__all__ = [
    "ADOPT_META",
    "Joined",
    "DeviceInfo",
    "DeviceService",
    "LinkInvite",
    "join_account",
    "linked_identity",
    "save_granted",
]
