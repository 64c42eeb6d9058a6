"""An account's device list (devices.md section 2): add, revoke, merge. Pure functions over
:class:`~p2pchat.protocol.records.DeviceListRecord`; no I/O, time passed in.

Every device of an account publishes the whole list, so two devices may hold different
versions; :func:`merge_lists` combines them so that revocations are sticky (a device once
revoked never comes back) and the result is the same whichever order lists are merged in.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchat.errors import LocalProtocolError
from p2pchat_crypto.errors import DecodeError
from p2pchat_crypto.identity import DeviceCertificate

from .codec import Bytes, Struct, wire
from .records import (
    MAX_DEVICES,
    MAX_RECORD_SIZE,
    MAX_REVOCATIONS,
    DeviceEntry,
    DeviceListRecord,
    Revocation,
)
from .signing import AnySigner

__all__ = [
    "DEVICE_LIST_CONTENT_TYPE",
    "DeviceListNotice",
    "single_device_list",
    "merge_lists",
    "add_device",
    "revoke_device",
    "current_devices",
    "revoked_devices",
]


def _cert_expiry(entry: DeviceEntry) -> float:
    try:
        expires = DeviceCertificate.decode(entry.cert).expires
    except DecodeError:
        return -1.0
    return float("inf") if expires is None else float(expires)


def _normalised(
    devices: dict[bytes, DeviceEntry], revoked: dict[bytes, Revocation]
) -> DeviceListRecord:
    current = tuple(devices[key] for key in sorted(devices) if key not in revoked)
    if not current:
        raise LocalProtocolError("a device list must keep at least one device")
    if len(current) > MAX_DEVICES:
        raise LocalProtocolError(f"an account has at most {MAX_DEVICES} devices")
    revs = tuple(revoked[key] for key in sorted(revoked))
    return DeviceListRecord(devices=current, revoked=revs or None)


def single_device_list(entry: DeviceEntry) -> DeviceListRecord:
    """The list of a new account: its one device."""
    return DeviceListRecord(devices=(entry,))


def current_devices(record: DeviceListRecord) -> tuple[bytes, ...]:
    return tuple(entry.device for entry in record.devices)


def revoked_devices(record: DeviceListRecord) -> tuple[bytes, ...]:
    return tuple(rev.device for rev in record.revoked or ())


def merge_lists(mine: DeviceListRecord, theirs: DeviceListRecord) -> DeviceListRecord:
    """Union of devices and of revocations, minus every revoked device (devices.md section 2).

    Both lists must be of the same account and already validated. Of two certificates for
    one device the later-expiring is kept; of two revocations the earlier. Revocations
    beyond :data:`MAX_REVOCATIONS` keep the earliest (the list never grows without bound).
    """
    devices: dict[bytes, DeviceEntry] = {}
    for entry in (*mine.devices, *theirs.devices):
        held = devices.get(entry.device)
        if held is None or (_cert_expiry(entry), entry.cert) > (_cert_expiry(held), held.cert):
            devices[entry.device] = entry
    revoked: dict[bytes, Revocation] = {}
    for rev in (*(mine.revoked or ()), *(theirs.revoked or ())):
        held_rev = revoked.get(rev.device)
        if held_rev is None or (rev.at, rev.sig) < (held_rev.at, held_rev.sig):
            revoked[rev.device] = rev
    if len(revoked) > MAX_REVOCATIONS:
        keep = sorted(revoked.values(), key=lambda r: (r.at, r.device))[:MAX_REVOCATIONS]
        revoked = {rev.device: rev for rev in keep}
    return _normalised(devices, revoked)


def add_device(record: DeviceListRecord, entry: DeviceEntry) -> DeviceListRecord:
    """The list with ``entry`` added; refuses a revoked device or a full list."""
    if entry.device in revoked_devices(record):
        raise LocalProtocolError("that device was revoked and cannot be linked again")
    devices = {e.device: e for e in record.devices}
    devices[entry.device] = entry
    return _normalised(devices, {rev.device: rev for rev in record.revoked or ()})


def revoke_device(
    record: DeviceListRecord, device: bytes, *, now: int, signing_key: AnySigner
) -> tuple[DeviceListRecord, Revocation]:
    """The list with ``device`` revoked (signed by the account key ``signing_key``)."""
    if device in revoked_devices(record):
        raise LocalProtocolError("that device is already revoked")
    if device not in current_devices(record):
        raise LocalProtocolError("no such device in the account's list")
    if len(record.devices) == 1:
        raise LocalProtocolError("cannot revoke the account's last device")
    if len(record.revoked or ()) >= MAX_REVOCATIONS:
        raise LocalProtocolError(f"the list already holds {MAX_REVOCATIONS} revocations")
    revocation = Revocation.sign(device=device, at=now, signing_key=signing_key)
    revoked = {rev.device: rev for rev in record.revoked or ()}
    revoked[device] = revocation
    return _normalised({e.device: e for e in record.devices}, revoked), revocation


#: ``p2pchat/device-list``: node-to-node content (wire.md section 7, devices.md section 7).
DEVICE_LIST_CONTENT_TYPE = "p2pchat/device-list"


@dataclass(frozen=True, kw_only=True)
class DeviceListNotice(Struct):
    """``p2pchat/device-list``: the sender's account's new signed device list, sent to its
    contacts as soon as it changed (a device linked or revoked)."""

    list: bytes = wire(
        "list",
        Bytes(low=1, high=MAX_RECORD_SIZE["devices"]),
        "the signed devices record, exactly as published in the DHT (wire.md DHT records)",
    )
