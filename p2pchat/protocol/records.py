"""DHT records: signed, expiring, sequence-numbered values under ``/p2pchat/<ns>/<hex>``.

The node registers :func:`validate_record` and :func:`select_record` as the DHT's
namespace validator (py-libp2p's ``validate()`` / ``select()``), with strict validation
on, so a DHT server stores nothing that fails them.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from p2pchat.errors import LocalProtocolError, WireError
from p2pchat_crypto.kdf import blake2b

from .codec import (
    AnyMap,
    Bytes,
    Choice,
    ListOf,
    Nested,
    Struct,
    Text,
    UInt,
    decode_map,
    encode_value,
    wire,
)
from .group_events import GROUP_KINDS, MAX_EVENT, decode_event
from .revocation import Revocation
from .signing import AnySigner, public_key_of, sign_map, signed_bytes, verify_signature

__all__ = [
    "NAMESPACES",
    "MAX_RECORD_SIZE",
    "MAX_LIFETIME_MS",
    "Record",
    "PrekeyRecord",
    "DeviceEntry",
    "Revocation",
    "DeviceListRecord",
    "MAX_DEVICES",
    "MAX_REVOCATIONS",
    "GroupRecord",
    "TopicEntry",
    "TopicRecord",
    "MailboxEntry",
    "MailboxRecord",
    "RECORD_BODIES",
    "DHT_KEY_BYTES",
    "dht_key",
    "fold_tag",
    "check_tag",
    "topic_key",
    "parse_dht_key",
    "decode_record",
    "validate_record",
    "select_record",
    "sign_record",
]

_KEY = Bytes(32)
#: Largest encoded record per namespace.
MAX_RECORD_SIZE: dict[str, int] = {
    "prekeys": 8 * 1024,
    "devices": 8 * 1024,
    "group": MAX_EVENT + 2048,
    "topic": 16 * 1024,
    "mailbox": 2 * 1024,
}
NAMESPACES = tuple(MAX_RECORD_SIZE)
#: A record may not claim to live longer than this past ``now`` (30 days).
MAX_LIFETIME_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True, kw_only=True)
class PrekeyRecord(Struct):
    bundle: bytes = wire("bundle", Bytes(low=1, high=4096), "prekey bundle (crypto.md section 4)")


@dataclass(frozen=True, kw_only=True)
class DeviceEntry(Struct):
    device: bytes = wire("dev", _KEY, "device key")
    cert: bytes = wire("cert", Bytes(low=1, high=256), "device certificate (crypto.md section 3.2)")


#: At most this many current devices per account, and this many kept revocations.
MAX_DEVICES = 16
MAX_REVOCATIONS = 32


@dataclass(frozen=True, kw_only=True)
class DeviceListRecord(Struct):
    devices: tuple[DeviceEntry, ...] = wire(
        "devs", ListOf(Nested(DeviceEntry), 1, MAX_DEVICES), "the account's current devices"
    )
    revoked: tuple[Revocation, ...] | None = wire(
        "revoked",
        ListOf(Nested(Revocation), 0, MAX_REVOCATIONS),
        "devices the account revoked (devices.md section 2)",
        optional=True,
    )

    def check_list(self, account_key: bytes) -> None:
        """The device-list rules of devices.md section 2 (``WireError``)."""
        keys = [entry.device for entry in self.devices]
        if len(set(keys)) != len(keys):
            raise WireError("duplicate", "a device appears twice in the list")
        revoked = [rev.device for rev in self.revoked or ()]
        if len(set(revoked)) != len(revoked):
            raise WireError("duplicate", "a device is revoked twice")
        for rev in self.revoked or ():
            if rev.account != account_key:
                raise WireError("wrong-signer", "a revocation by another account")
            rev.verify()
        if set(keys) & set(revoked):
            raise WireError("revoked-device", "a revoked device is listed as current")


@dataclass(frozen=True, kw_only=True)
class GroupRecord(Struct):
    genesis: bytes = wire("gen", Bytes(low=1, high=MAX_EVENT), "the genesis event, exact bytes")
    peers: tuple[str, ...] = wire("peers", ListOf(Text(1, 128), 0, 16), "peer ids to sync from")


@dataclass(frozen=True, kw_only=True)
class TopicEntry(Struct):
    group: bytes = wire("g", _KEY, "group id")
    name: str = wire("name", Text(1, 64), "group name")
    kind: str = wire("kind", Choice(GROUP_KINDS), "group kind")


@dataclass(frozen=True, kw_only=True)
class TopicRecord(Struct):
    tag: str = wire("tag", Text(1, 32), "the topic tag, as hashed into the key")
    groups: tuple[TopicEntry, ...] = wire("groups", ListOf(Nested(TopicEntry), 1, 64), "groups")


@dataclass(frozen=True, kw_only=True)
class MailboxEntry(Struct):
    peer: str = wire("peer", Text(1, 128), "mailbox peer id")
    addrs: tuple[str, ...] = wire("addrs", ListOf(Text(1, 256), 0, 8), "its multiaddrs")


@dataclass(frozen=True, kw_only=True)
class MailboxRecord(Struct):
    mailboxes: tuple[MailboxEntry, ...] = wire(
        "boxes", ListOf(Nested(MailboxEntry), 1, 4), "where the account's mail waits"
    )


RECORD_BODIES: dict[str, type[Struct]] = {
    "prekeys": PrekeyRecord,
    "devices": DeviceListRecord,
    "group": GroupRecord,
    "topic": TopicRecord,
    "mailbox": MailboxRecord,
}


@dataclass(frozen=True, kw_only=True)
class Record(Struct):
    version: int = wire("v", UInt(1, 1), "record format version, 1")
    ns: str = wire("ns", Choice(NAMESPACES), "namespace, equals the DHT key's")
    key: bytes = wire("key", _KEY, "the 32 bytes hex-encoded in the DHT key")
    seq: int = wire("seq", UInt(), "newer records have a higher seq")
    expires: int = wire("exp", UInt(), "expiry, ms since the epoch")
    signer: bytes = wire("signer", _KEY, "Ed25519 key that signed (rule per namespace)")
    body: Mapping[str, Any] = wire("body", AnyMap(16), "namespace-specific body")
    sig: bytes = wire("sig", Bytes(64), "Ed25519 by signer, context record")
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    parsed: Struct | None = dataclasses.field(default=None, compare=False, repr=False)


#: A DHT key names a record by the first 16 bytes of its 32-byte key, so that the whole
#: key stays within 50 bytes: py-libp2p 0.8.1 servers ignore a FIND_NODE whose key is
#: longer and not a multihash, which would confine a record to its publisher's direct
#: neighbours. The record itself carries the full key (checked by every reader).
DHT_KEY_BYTES = 16


def dht_key(ns: str, key: bytes) -> str:
    """``/p2pchat/<ns>/<hex of the first 16 bytes of key>`` (at most 49 bytes)."""
    return f"/p2pchat/{ns}/{key[:DHT_KEY_BYTES].hex()}"


#: The Unicode version that defines :func:`fold_tag` (wire.md section 10.1).
TAG_UNICODE_VERSION = "14.0.0"


def fold_tag(tag: str) -> str:
    """The form of a topic tag that is hashed (wire.md section 10.1): NFKC, then every code
    point replaced by its full lowercase mapping *without context* (Unicode 14.0).

    Per code point, so no language-specific rule applies (Python's ``str.casefold`` folds
    'Straße' to 'strasse', JavaScript has no case folding at all; ``lower()`` of a whole
    string applies the Final_Sigma context). JavaScript gets the same result with
    ``[...tag.normalize("NFKC")].map((c) => c.toLowerCase()).join("")``.
    """
    return "".join(ch.lower() for ch in unicodedata.normalize("NFKC", tag))


def check_tag(tag: str) -> None:
    """Refuse (``LocalProtocolError``) a tag a node must not publish: one with a code point
    unassigned in its Unicode data, whose folding may differ across implementations."""
    if any(unicodedata.category(ch) in ("Cn", "Cs") for ch in tag):
        raise LocalProtocolError("a topic tag may hold only assigned Unicode code points")


def topic_key(tag: str) -> bytes:
    """The 32-byte key of a topic: BLAKE2b-256 (person ``p2pchat-topic``) of the UTF-8 of
    :func:`fold_tag`."""
    return blake2b(fold_tag(tag).encode(), size=32, person=b"p2pchat-topic")


def parse_dht_key(text: str) -> tuple[str, bytes]:
    parts = text.split("/")
    if len(parts) != 4 or parts[:2] != ["", "p2pchat"] or parts[2] not in MAX_RECORD_SIZE:
        raise WireError("bad-key", "not a /p2pchat/<ns>/<hex> key")
    hex_part = parts[3]
    digits = 2 * DHT_KEY_BYTES
    if len(hex_part) != digits or hex_part != hex_part.lower() or not hex_part.isascii():
        raise WireError("bad-key", f"key must be {digits} lowercase hex digits")
    try:
        return parts[2], bytes.fromhex(hex_part)
    except ValueError:
        raise WireError("bad-key", f"key must be {digits} lowercase hex digits") from None


def decode_record(data: bytes, *, ns: str) -> Record:
    """Strictly decode a record of namespace ``ns`` (no signature or expiry check)."""
    if ns not in MAX_RECORD_SIZE:
        raise WireError("wrong-namespace", "not a p2pchat record namespace")
    raw = decode_map(data, max_size=MAX_RECORD_SIZE[ns])
    record = Record.from_value(raw)
    if record.ns != ns:
        raise WireError("wrong-namespace", "record namespace differs from its key's")
    parsed = RECORD_BODIES[ns].from_value(dict(record.body), path="body")
    return dataclasses.replace(record, raw=MappingProxyType(raw), parsed=parsed)


def _authorised_signer(record: Record) -> None:
    body = record.parsed
    if isinstance(body, GroupRecord):
        genesis = decode_event(body.genesis)
        if genesis.kind != "genesis" or genesis.event_id != record.key:
            raise WireError("wrong-key", "genesis does not hash to the record key")
        genesis.verify()
        if record.signer != genesis.author_device:
            raise WireError("wrong-signer", "group records are signed by the genesis author")
    elif isinstance(body, TopicRecord):
        if topic_key(body.tag) != record.key:
            raise WireError("wrong-key", "tag does not hash to the record key")
    elif record.signer != record.key:
        raise WireError("wrong-signer", f"{record.ns} records are signed by the key owner")


def validate_record(key: str, data: bytes, *, now: int, full_key: bytes | None = None) -> Record:
    """The DHT validator: every rule of wire.md "DHT records"; raises ``WireError``.

    ``full_key``: a reader that knows the 32-byte key it looks up requires it exactly
    (the DHT key holds only its first 16 bytes).
    """
    ns, key_bytes = parse_dht_key(key)
    record = decode_record(data, ns=ns)
    if record.key[:DHT_KEY_BYTES] != key_bytes:
        raise WireError("wrong-key", "record key differs from the DHT key")
    if full_key is not None and record.key != full_key:
        raise WireError("wrong-key", "record for another key with the same DHT key")
    if record.expires <= now:
        raise WireError("expired", "record has expired")
    if record.expires > now + MAX_LIFETIME_MS:
        raise WireError("out-of-range", "expiry too far in the future")
    _authorised_signer(record)
    verify_signature(signed_bytes("record", record.raw), record.sig, record.signer)
    if isinstance(record.parsed, DeviceListRecord):
        record.parsed.check_list(record.key)
    return record


def select_record(key: str, values: Sequence[bytes], *, now: int) -> int:
    """Index of the best valid value: highest seq, then latest expiry, then smallest bytes.

    Raises ``WireError("no-valid-record")`` when none is valid.
    """
    candidates: list[tuple[int, int, bytes, int]] = []
    for index, data in enumerate(values):
        try:
            record = validate_record(key, data, now=now)
        except WireError:
            continue
        candidates.append((-record.seq, -record.expires, bytes(data), index))
    if not candidates:
        raise WireError("no-valid-record", "no value passes validation")
    return min(candidates)[3]


def sign_record(
    body: Struct, *, ns: str, key: bytes, seq: int, expires: int, signing_key: AnySigner
) -> bytes:
    """Encode and sign a record; refuses (``LocalProtocolError``) a body of the wrong kind."""
    if RECORD_BODIES.get(ns) is not type(body):
        raise LocalProtocolError(f"{type(body).__name__} is not a {ns} record body")
    if isinstance(body, TopicRecord):
        check_tag(body.tag)
    value: dict[str, Any] = {
        "v": 1,
        "ns": ns,
        "key": key,
        "seq": seq,
        "exp": expires,
        "signer": public_key_of(signing_key),
        "body": body.to_value(),
    }
    value["sig"] = sign_map("record", value, signing_key)
    try:
        data = encode_value(value)
        decode_record(data, ns=ns)
    except WireError as exc:
        raise LocalProtocolError(f"refusing to publish an invalid record: {exc}") from exc
    return data
