"""Multi-device accounts (protocol-spec/devices.md): the device list of our account, linking a
new device (:mod:`.service` on the existing device, :mod:`.join` on the new one), renaming and
revoking, and direct-message history for a new device (:mod:`.history`). The link and history
protocols themselves are sans-IO in :mod:`p2pchat.protocol.device_link` and
:mod:`p2pchat.protocol.device_history`."""

from .history import (
    LINK_HISTORY_META,
    HistoryAsk,
    HistoryResult,
    HistorySync,
    LinkHistory,
    load_link_history,
    save_link_history,
)
from .join import ADOPT_META, Joined, join_account, linked_identity, save_granted
from .roster import DeviceInfo
from .service import DeviceService, LinkInvite

__all__ = [
    "ADOPT_META",
    "LINK_HISTORY_META",
    "Joined",
    "DeviceInfo",
    "DeviceService",
    "HistoryAsk",
    "HistoryResult",
    "HistorySync",
    "LinkHistory",
    "LinkInvite",
    "join_account",
    "linked_identity",
    "load_link_history",
    "save_granted",
    "save_link_history",
]
