"""Our contacts learn at once that our account's device list changed (protocol-spec/
devices.md section 7, wire.md section 7: node-to-node content ``p2pchat/device-list``).

Peers look an account's device list up in the DHT at most once a minute; a device linked
(or revoked) meanwhile would miss (or keep getting) what they send. So when this device
links or revokes a device, it sends the new signed list (the very record it publishes in
the DHT) to every accepted contact, fanned out to their devices inside their pairwise
sessions (hidden content: never shown, never answered).

A receiver validates it exactly as a DHT lookup would (the record's signature by the
sender's account, its key, expiry, the list's rules; each device's certificate) and takes
it only if it is newer (``seq``) than the list it holds: its new devices are targets at
once, its revoked devices are dropped. At most one list per account per
:data:`MIN_INTERVAL_MS`; anything else is refused with a typed error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import RateLimitedError, WireError
from ..identity.directory import Directory
from ..protocol.content import Content
from ..protocol.device_list import DEVICE_LIST_CONTENT_TYPE
from ..protocol.device_list import DeviceListNotice as NoticeBody
from ..protocol.limits import PeerLimiter
from ..protocol.records import DeviceListRecord
from ..storage.base import Store
from ..storage.records import ContactState
from .service import DirectMessages

__all__ = ["BURST", "DEVICE_LIST_CONTENT_TYPE", "MIN_INTERVAL_MS", "DeviceListNotice"]

logger = logging.getLogger(__name__)

#: One list per account in this window on average (a link or revocation is rare), with
#: a burst of :data:`BURST` (a link then a revocation at once both arrive).
MIN_INTERVAL_MS = 2_000
BURST = 4


class DeviceListNotice:
    """See the module docstring."""

    def __init__(
        self,
        *,
        dm: DirectMessages,
        directory: Directory,
        store: Store,
        clock: Callable[[], int],
    ) -> None:
        self._dm = dm
        self._directory = directory
        self._store = store
        self._clock = clock
        self._account = dm.targets.own_account
        self._limiter = PeerLimiter(rate=1000 / MIN_INTERVAL_MS, burst=BURST, max_peers=4096)
        self.stats = {"sent": 0, "applied": 0, "refused": 0}
        dm.control_handlers[DEVICE_LIST_CONTENT_TYPE] = self._receive

    def __repr__(self) -> str:
        return f"<DeviceListNotice {self.stats}>"

    async def announce(self) -> None:
        """Send our account's current signed device list to every accepted contact."""
        value = self._directory.device_list_value
        if value is None:
            return
        body = NoticeBody(list=value).to_value()
        content = Content(type=DEVICE_LIST_CONTENT_TYPE, body=body, text="")
        for contact in await self._store.list_contacts(state=ContactState.ACCEPTED):
            if contact.account == self._account:
                continue
            await self._dm.send_hidden(contact.account, content)
            self.stats["sent"] += 1

    async def _receive(self, account: bytes, device: bytes, content: Content) -> None:
        if account == self._account:
            raise WireError("wrong-sender", "our own devices merge lists through the DHT")
        try:
            value = NoticeBody.from_value(dict(content.body), path="body").list
        except WireError:
            self.stats["refused"] += 1
            raise
        # Before the signature checks; garbage counts too (the sender is authenticated).
        if not self._limiter.allow(account.hex(), self._clock()):
            self.stats["refused"] += 1
            raise RateLimitedError("at most one device list per account every few seconds")
        try:
            record = await self._directory.accept_device_list(account, value)
        except WireError:
            self.stats["refused"] += 1
            raise
        assert isinstance(record.parsed, DeviceListRecord)
        targets = self._dm.targets
        held = targets.held_seq(account)
        if held is not None and record.seq <= held:
            return  # not newer than what we hold: never roll back
        for revoked in targets.apply(account, record.parsed, record.seq):
            await self._dm.drop_device(account, revoked)
        await self._dm.catch_up()  # what we sent since the new devices' certificates
        self.stats["applied"] += 1
        logger.info("device list of %s updated by its node", account.hex()[:16])
