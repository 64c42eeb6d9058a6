"""Our account's device list and the devices' local names, kept in the store's meta table.

The list is kept as the CBOR of its record body (devices.md section 2), names as a CBOR map
of device key to name. Both are small (at most 16 devices and 32 revocations).
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import CryptoError
from p2pchat_crypto.identity import DeviceCertificate

from ..errors import StorageError, WireError
from ..protocol.codec import decode_map
from ..protocol.records import DeviceListRecord
from ..storage.base import Store

__all__ = ["DeviceInfo", "load_list", "save_list", "load_names", "save_names", "describe"]

LIST_META = "devices.list"
NAMES_META = "devices.names"
_MAX = 16 * 1024


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One device of our account as the user sees it."""

    device: bytes
    name: str
    created: int
    state: str  # "current" or "revoked"
    this_device: bool
    revoked_at: int | None = None


async def load_list(store: Store) -> DeviceListRecord | None:
    data = await store.get_meta(LIST_META)
    if data is None:
        return None
    try:
        return DeviceListRecord.from_value(decode_map(data, max_size=_MAX))
    except WireError as exc:
        raise StorageError(f"the stored device list is damaged: {exc}") from None


async def save_list(store: Store, devices: DeviceListRecord) -> None:
    await store.put_meta(LIST_META, cbor.encode(devices.to_value()))


async def load_names(store: Store) -> dict[bytes, str]:
    data = await store.get_meta(NAMES_META)
    if data is None:
        return {}
    try:
        value = cbor.decode(data, max_size=_MAX)
    except CryptoError:
        return {}
    if not isinstance(value, dict):
        return {}
    names: dict[bytes, str] = {}
    for key, name in value.items():
        if isinstance(key, str) and isinstance(name, str) and len(key) == 64:
            try:
                names[bytes.fromhex(key)] = name
            except ValueError:
                continue
    return names


async def save_names(store: Store, names: dict[bytes, str]) -> None:
    await store.put_meta(NAMES_META, cbor.encode({k.hex(): v for k, v in names.items()}))


def _created(cert: bytes) -> int:
    try:
        return DeviceCertificate.decode(cert).created
    except CryptoError:
        return 0


def describe(
    devices: DeviceListRecord, names: dict[bytes, str], *, this_device: bytes
) -> list[DeviceInfo]:
    """Current devices (this one first, then by creation), then revoked ones."""
    current = [
        DeviceInfo(
            device=entry.device,
            name=names.get(entry.device, ""),
            created=_created(entry.cert),
            state="current",
            this_device=entry.device == this_device,
        )
        for entry in devices.devices
    ]
    current.sort(key=lambda d: (not d.this_device, d.created, d.device))
    revoked = [
        DeviceInfo(
            device=rev.device,
            name=names.get(rev.device, ""),
            created=0,
            state="revoked",
            this_device=rev.device == this_device,
            revoked_at=rev.at,
        )
        for rev in sorted(devices.revoked or (), key=lambda r: (r.at, r.device))
    ]
    return current + revoked
