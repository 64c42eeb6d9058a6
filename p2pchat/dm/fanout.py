"""Which devices a direct message goes to (protocol-spec/devices.md section 7, fan-out).

A message to an account goes to every *current* device of that account (its device list
in the DHT, minus revoked devices) and, as a copy, to every other current device of our
own account, each over its own pairwise session. :class:`DeviceTargets` keeps what this
node knows of each account's devices:

* the devices of the account's last device list fetched from the DHT (``resolve``),
  refreshed by the outbox worker once older than ``ttl_ms``;
* devices seen sending to us under the account (a verified X3DH initial message names a
  device the account certified, ``learn``) and devices we hold sessions with: before
  the first lookup, and whenever the DHT cannot answer, these are the targets;
* every device a device list revoked (``revoked``): never a target again, its sessions
  are dropped and what it sends is refused (the DM driver does both).

* the list a contact's node sent us as soon as it changed (``p2pchat/device-list``,
  :mod:`p2pchat.dm.device_notice`, ``apply``): validated as a DHT lookup is, taken at
  once, never replaced by an older list (its ``seq``).

Our own other devices come from our account's device list (``own_devices``, set by the
node); this device is never among the targets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..errors import NetworkError, NotFoundError
from ..identity.directory import Directory
from ..protocol.device_list import current_devices, revoked_devices
from ..protocol.records import DeviceListRecord

__all__ = ["DeviceTargets", "TARGETS_TTL_MS"]

logger = logging.getLogger(__name__)

#: How long an account's device list is used before the worker looks it up again.
TARGETS_TTL_MS = 60_000
#: Devices waiting for ``catch_up`` at most (a list holds at most 16).
_MAX_APPEARED = 1024


class DeviceTargets:
    """The devices of each account a message goes to (see the module docstring)."""

    def __init__(
        self,
        *,
        directory: Directory,
        clock: Callable[[], int],
        own_account: bytes,
        own_device: bytes,
        ttl_ms: int = TARGETS_TTL_MS,
    ) -> None:
        self._directory = directory
        self._clock = clock
        self._own_account = own_account
        self._own_device = own_device
        self._ttl_ms = ttl_ms
        # account -> (when its list was fetched, its current devices in list order)
        self._devices: dict[bytes, tuple[int, tuple[bytes, ...]]] = {}
        # account -> the seq of the newest list applied (an older one is never taken)
        self._seq: dict[bytes, int] = {}
        #: Devices known revoked by their account (any account, ours included).
        self.revoked: set[bytes] = set()
        #: Devices that appeared in an account's list, with their certificate's time:
        #: what we sent the account since then goes to them too (``catch_up`` drains it).
        self.appeared: dict[tuple[bytes, bytes], int] = {}
        #: Our account's other current devices (set by the node from our device list).
        self.own_devices: Callable[[], Iterable[bytes]] = tuple

    @property
    def own_account(self) -> bytes:
        return self._own_account

    def __repr__(self) -> str:
        return f"<DeviceTargets {len(self._devices)} accounts, {len(self.revoked)} revoked>"

    def own_others(self) -> tuple[bytes, ...]:
        """Our other current devices (the copies of what we send go there)."""
        return tuple(
            d for d in self.own_devices() if d != self._own_device and d not in self.revoked
        )

    def known(self, account: bytes) -> tuple[bytes, ...] | None:
        """The account's devices as last known (perhaps stale); None if none is known."""
        if account == self._own_account:
            return self.own_others()
        held = self._devices.get(account)
        if held is None:
            return None
        devices = tuple(d for d in held[1] if d not in self.revoked)
        return devices or None

    def stale(self, account: bytes) -> bool:
        if account == self._own_account:
            return False
        held = self._devices.get(account)
        return held is None or self._clock() - held[0] >= self._ttl_ms

    def learn(self, account: bytes, device: bytes) -> None:
        """``device`` proved it belongs to ``account`` (it opened a session with us)."""
        if account == self._own_account or device in self.revoked:
            return
        at, devices = self._devices.get(account, (0, ()))
        if device not in devices:
            self._devices[account] = (at, (*devices, device))

    def seed(self, account: bytes, devices: Iterable[bytes]) -> None:
        """Devices we hold sessions with (at start): targets until the first lookup."""
        for device in devices:
            self.learn(account, device)

    def held_seq(self, account: bytes) -> int | None:
        """The ``seq`` of the newest list of ``account`` applied (None: none yet)."""
        return self._seq.get(account)

    def apply(self, account: bytes, record: DeviceListRecord, seq: int) -> tuple[bytes, ...]:
        """Take ``account``'s validated device list (``seq`` its record's): its certified
        current devices become the targets now, its revoked devices are never targets
        again. A list older than one applied before changes nothing (no roll-back).
        Returns the devices it revoked that we did not know of (the caller drops them)."""
        if account == self._own_account:
            return ()
        if seq < self._seq.get(account, -1):
            held = self._devices.get(account)
            if held is not None:  # what we hold is still the newest known: fresh
                self._devices[account] = (self._clock(), held[1])
            return ()
        self._seq[account] = seq
        newly = tuple(d for d in revoked_devices(record) if d not in self.revoked)
        self.revoked.update(newly)
        created = {c.device_key: c.created for c in self._directory.certified(record, account)}
        devices = tuple(d for d in current_devices(record) if d in created)
        if devices:
            held = self._devices.get(account)
            if held is not None and len(self.appeared) < _MAX_APPEARED:
                for device in devices:
                    if device not in held[1]:
                        self.appeared[account, device] = created[device]
            self._devices[account] = (self._clock(), devices)
        return newly

    async def resolve(self, account: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """Look the account's device list up; return (its current devices, the devices it
        revoked that we did not know of). Raises :class:`NotFoundError` when no device is
        known at all (no list in the DHT and none seen)."""
        if account == self._own_account:
            return self.own_others(), ()
        try:
            record = await self._directory.device_record_of(account)
        except NetworkError as exc:
            logger.debug("device list of %s: %s", account.hex()[:16], exc)
            record = None
        newly: tuple[bytes, ...] = ()
        if record is not None and isinstance(record.parsed, DeviceListRecord):
            newly = self.apply(account, record.parsed, record.seq)
        known = self.known(account)
        if known is None:
            raise NotFoundError(
                "account not found: no record of it in the DHT (is the key right, and has "
                "that node been online?)"
            )
        return known, newly
