"""State sent to a newly linked device (devices.md section 4.3): contacts and group
memberships, in one ``sync`` frame after ``done``, sealed under the link key.

Sans-IO: these are the messages and their strict decoding; the link objects of
:mod:`.device_link` seal and open the box.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchat.errors import WireError

from .codec import Bool, Bytes, Choice, ListOf, Nested, Struct, Text, UInt, decode_map, wire

__all__ = [
    "MAX_SYNC_FRAME",
    "MAX_SYNC_CONTACTS",
    "MAX_SYNC_GROUPS",
    "CONTACT_STATES",
    "SyncContact",
    "SyncGroup",
    "SyncContent",
    "LinkSync",
    "decode_sync_frame",
    "decode_sync_content",
]

#: The sync frame is larger than the other link frames (one frame, bounded lists).
MAX_SYNC_FRAME = 256 * 1024
MAX_SYNC_CONTACTS = 1000
MAX_SYNC_GROUPS = 200
CONTACT_STATES = ("requested_in", "requested_out", "accepted", "declined", "blocked")
_KEY = Bytes(32)


@dataclass(frozen=True, kw_only=True)
class SyncContact(Struct):
    account: bytes = wire("acct", _KEY, "the contact's account key")
    name: str = wire("name", Text(0, 256), "the name we gave the contact")
    state: str = wire("state", Choice(CONTACT_STATES), "where the contact stands")
    verified: bool = wire("ver", Bool(), "safety numbers compared")


@dataclass(frozen=True, kw_only=True)
class SyncGroup(Struct):
    group: bytes = wire("g", _KEY, "group id")
    invite: str | None = wire(
        "inv",
        Text(1, 2048),
        "an invite link for our own account (groups not open to all)",
        optional=True,
    )


@dataclass(frozen=True, kw_only=True)
class SyncContent(Struct):
    contacts: tuple[SyncContact, ...] = wire(
        "contacts", ListOf(Nested(SyncContact), 0, MAX_SYNC_CONTACTS), "our contacts"
    )
    groups: tuple[SyncGroup, ...] = wire(
        "groups", ListOf(Nested(SyncGroup), 0, MAX_SYNC_GROUPS), "groups the account is in"
    )


@dataclass(frozen=True, kw_only=True)
class LinkSync(Struct):
    KIND = "sync"
    t: str = wire("t", Choice(("sync",)), "message kind")
    v: int = wire("v", UInt(1, 1), "version, 1")
    box: bytes = wire(
        "box", Bytes(low=40, high=MAX_SYNC_FRAME - 64), "nonce, then the sealed sync-content"
    )


def decode_sync_frame(data: bytes) -> LinkSync:
    raw = decode_map(data, max_size=MAX_SYNC_FRAME)
    if raw.get("t") != "sync":
        raise WireError("unexpected", "expected a sync frame")
    return LinkSync.from_value(raw)


def decode_sync_content(plain: bytes) -> SyncContent:
    return SyncContent.from_value(decode_map(plain, max_size=MAX_SYNC_FRAME))
