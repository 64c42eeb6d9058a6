"""Group log events: the signed, hash-chained entries every group is made of.

Each author *device* keeps one append-only chain: event ``seq`` commits to the event id
of that device's event ``seq - 1`` (``prev``), and to the heads of other authors it had
seen (``deps``), which gives a causal order across chains. The event id is BLAKE2b-256
over the event's exact bytes *including* its signature, so a signature on a later event
transitively authenticates every earlier one (see :func:`~.sync_messages.authenticate_run`).

The group id is the event id of the group's genesis event (the only event with no ``g``).
Bodies of kinds this version does not know are kept (and relayed) but not interpreted:
dropping them would break the chain. Private groups wrap content events in ``sealed``
(a sender-key ciphertext, ``protocol-spec/crypto-group.md``) whose plaintext is an
:class:`InnerEvent`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from nacl.signing import SigningKey

from p2pchat.errors import LocalProtocolError, WireError
from p2pchat_crypto.kdf import blake2b

from .codec import (
    MAX_UINT,
    AnyMap,
    Bool,
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
from .content import Content, MediaRef, Price
from .revocation import Revocation
from .signing import sign_map, signed_bytes, verify_signature

__all__ = [
    "MAX_EVENT",
    "MAX_SEALED",
    "MAX_INNER",
    "ROLES",
    "GROUP_KINDS",
    "event_id_of",
    "Rules",
    "GroupDescriptor",
    "Genesis",
    "MemberAdd",
    "MemberInvite",
    "MemberJoin",
    "MemberLeave",
    "MemberRemove",
    "MemberBan",
    "RoleChange",
    "DeviceRevoke",
    "KeyBox",
    "SenderKeyDistribution",
    "Sealed",
    "Post",
    "Reply",
    "Reaction",
    "Edit",
    "Delete",
    "ShareCard",
    "Poll",
    "Vote",
    "GroupBuy",
    "GroupBuyJoin",
    "LiveComment",
    "InnerEvent",
    "GroupEvent",
    "EVENT_KINDS",
    "decode_event",
    "sign_event",
]

#: Cap on one encoded event: room for a sealed event holding the largest group message
#: of crypto-group.md (65,536-byte plaintext + 1,024 bytes of header and signature).
MAX_EVENT = 80 * 1024
#: Cap on a sealed event's ciphertext and on the inner event it decrypts to.
MAX_SEALED = 65_536 + 1024
MAX_INNER = 65_536
ROLES = ("owner", "admin", "moderator", "member", "viewer")
GROUP_KINDS = ("private", "public", "live")
_KEY = Bytes(32)
_EVENT_ID = Bytes(32)
_ROLE = Choice(ROLES)
_REASON = Text(0, 280)


def event_id_of(encoded_event: bytes) -> bytes:
    """BLAKE2b-256 (personalised) of an event's exact encoded bytes, signature included."""
    return blake2b(encoded_event, size=32, person=b"p2pchat-event")


# --- membership and administration -------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Rules(Struct):
    join: str = wire("join", Choice(("invite", "approval", "open")), "how members get in")
    post: str = wire("post", _ROLE, "lowest role allowed to post")
    invite: str = wire("invite", _ROLE, "lowest role allowed to invite")
    slow: int = wire("slow", UInt(0, 86400), "seconds a member waits between posts (0 = off)")
    max_members: int | None = wire("max", UInt(2, 1_000_000), "member cap", optional=True)


@dataclass(frozen=True, kw_only=True)
class GroupDescriptor(Struct):
    kind: str = wire("kind", Choice(GROUP_KINDS), "private (encrypted), public or live")
    name: str = wire("name", Text(1, 64), "group name")
    tags: tuple[str, ...] = wire("tags", ListOf(Text(1, 32), 0, 16), "topic tags (rendezvous)")
    rules: Rules = wire("rules", Nested(Rules), "group rules")  # noqa: RUF009 (wire() is a dataclasses.field)
    about: str | None = wire("about", Text(0, 1024), "description", optional=True)


@dataclass(frozen=True, kw_only=True)
class Genesis(Struct):
    KIND: ClassVar[str] = "genesis"
    descriptor: GroupDescriptor = wire("desc", Nested(GroupDescriptor), "the group descriptor")  # noqa: RUF009 (wire() is a dataclasses.field)
    nonce: bytes = wire("nonce", Bytes(16), "random, makes every group id unique")


@dataclass(frozen=True, kw_only=True)
class MemberAdd(Struct):
    KIND: ClassVar[str] = "member.add"
    account: bytes = wire("acct", _KEY, "account added")
    role: str = wire("role", _ROLE, "its role")


@dataclass(frozen=True, kw_only=True)
class MemberInvite(Struct):
    KIND: ClassVar[str] = "member.invite"
    invite: bytes = wire("inv", Bytes(32), "invite hash of the secret (groups.md section 5)")
    role: str = wire("role", _ROLE, "role granted on join")
    expires: int = wire("exp", UInt(), "invite expiry, ms since the epoch")
    account: bytes | None = wire("acct", _KEY, "the only account that may use it", optional=True)
    uses: int | None = wire(
        "uses",
        UInt(1, 1_000_000),
        "joins it admits (absent: 1), counted in log order",
        optional=True,
    )


@dataclass(frozen=True, kw_only=True)
class MemberJoin(Struct):
    KIND: ClassVar[str] = "member.join"
    secret: bytes | None = wire(
        "secret", Bytes(32), "invite secret (absent in open groups)", optional=True
    )


@dataclass(frozen=True, kw_only=True)
class MemberLeave(Struct):
    KIND: ClassVar[str] = "member.leave"
    reason: str | None = wire("reason", _REASON, "why", optional=True)


@dataclass(frozen=True, kw_only=True)
class MemberRemove(Struct):
    KIND: ClassVar[str] = "member.remove"
    account: bytes = wire("acct", _KEY, "account removed")
    reason: str | None = wire("reason", _REASON, "why", optional=True)


@dataclass(frozen=True, kw_only=True)
class MemberBan(Struct):
    KIND: ClassVar[str] = "member.ban"
    account: bytes = wire("acct", _KEY, "account banned (also removed)")
    reason: str | None = wire("reason", _REASON, "why", optional=True)
    until: int | None = wire("until", UInt(), "end of the ban, ms (absent: forever)", optional=True)


@dataclass(frozen=True, kw_only=True)
class RoleChange(Struct):
    KIND: ClassVar[str] = "role.change"
    account: bytes = wire("acct", _KEY, "member whose role changes")
    role: str = wire("role", _ROLE, "the new role")


@dataclass(frozen=True, kw_only=True)
class DeviceRevoke(Struct):
    """A member's device revoked by its account (devices.md section 7): from ``upto`` on,
    the device's events are void, and private groups move to a new epoch."""

    KIND: ClassVar[str] = "device.revoke"
    revocation: Revocation = wire("rev", Nested(Revocation), "the account's signed revocation")  # noqa: RUF009 (wire() is a dataclasses.field)
    upto: int = wire("upto", UInt(), "the revoked device's last valid event (seq; 0: none)")


@dataclass(frozen=True, kw_only=True)
class KeyBox(Struct):
    device: bytes = wire("dev", _KEY, "recipient device key")
    box: bytes = wire("c", Bytes(low=1, high=4096), "sender key, pairwise-encrypted (crypto.md)")


@dataclass(frozen=True, kw_only=True)
class SenderKeyDistribution(Struct):
    KIND: ClassVar[str] = "skey.dist"
    epoch: int = wire("epoch", UInt(), "sender-key epoch (crypto-group.md)")
    boxes: tuple[KeyBox, ...] = wire("boxes", ListOf(Nested(KeyBox), 1, 1024), "one per device")


@dataclass(frozen=True, kw_only=True)
class Sealed(Struct):
    KIND: ClassVar[str] = "sealed"
    ciphertext: bytes = wire(
        "e", Bytes(low=1, high=MAX_SEALED), "group message (crypto-group.md) of an inner event"
    )


# --- content -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Post(Struct):
    KIND: ClassVar[str] = "post"
    content: Content = wire("c", Nested(Content), "the post")  # noqa: RUF009 (wire() is a dataclasses.field)


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply(Struct):
    KIND: ClassVar[str] = "reply"
    target: bytes = wire("to", _EVENT_ID, "event id replied to")
    content: Content = wire("c", Nested(Content), "the reply")  # noqa: RUF009 (wire() is a dataclasses.field)


@dataclass(frozen=True, kw_only=True)
class Reaction(Struct):
    KIND: ClassVar[str] = "react"
    target: bytes = wire("to", _EVENT_ID, "event id reacted to")
    emoji: str = wire("emoji", Text(1, 32), "the reaction")
    on: bool = wire("on", Bool(), "true adds, false removes")


@dataclass(frozen=True, kw_only=True)
class Edit(Struct):
    KIND: ClassVar[str] = "edit"
    target: bytes = wire("to", _EVENT_ID, "event id edited (same author only)")
    content: Content = wire("c", Nested(Content), "the new content")  # noqa: RUF009 (wire() is a dataclasses.field)


@dataclass(frozen=True, kw_only=True)
class Delete(Struct):
    KIND: ClassVar[str] = "delete"
    target: bytes = wire("to", _EVENT_ID, "event id redacted (author or moderator)")
    reason: str | None = wire("reason", _REASON, "why", optional=True)


@dataclass(frozen=True, kw_only=True)
class ShareCard(Struct):
    KIND: ClassVar[str] = "share"
    title: str = wire("title", Text(1, 200), "title")
    url: str = wire("url", Text(1, 2048), "link")
    price: Price | None = wire("price", Nested(Price), "price (shopping)", optional=True)  # noqa: RUF009 (wire() is a dataclasses.field)
    image: MediaRef | None = wire("img", Nested(MediaRef), "preview image", optional=True)  # noqa: RUF009 (wire() is a dataclasses.field)
    note: str | None = wire("note", Text(0, 1000), "comment", optional=True)


@dataclass(frozen=True, kw_only=True)
class Poll(Struct):
    KIND: ClassVar[str] = "poll"
    question: str = wire("q", Text(1, 300), "question")
    options: tuple[str, ...] = wire("opts", ListOf(Text(1, 100), 2, 16), "choices")
    multi: bool = wire("multi", Bool(), "several choices allowed")
    deadline: int = wire("deadline", UInt(), "votes after it are ignored, ms")


@dataclass(frozen=True, kw_only=True)
class Vote(Struct):
    KIND: ClassVar[str] = "vote"
    poll: bytes = wire("poll", _EVENT_ID, "event id of the poll")
    choices: tuple[int, ...] = wire(
        "choice", ListOf(UInt(0, 15), 0, 16), "option indexes (empty retracts)"
    )


@dataclass(frozen=True, kw_only=True)
class GroupBuy(Struct):
    KIND: ClassVar[str] = "buy"
    title: str = wire("title", Text(1, 200), "what is bought together")
    options: tuple[str, ...] = wire("opts", ListOf(Text(1, 100), 1, 16), "variants")
    quota: int = wire("quota", UInt(1, 1_000_000), "units needed for the buy to happen")
    deadline: int = wire("deadline", UInt(), "joins after it are ignored, ms")
    price: Price | None = wire("price", Nested(Price), "unit price", optional=True)  # noqa: RUF009 (wire() is a dataclasses.field)
    url: str | None = wire("url", Text(1, 2048), "product link", optional=True)
    image: MediaRef | None = wire("img", Nested(MediaRef), "product image", optional=True)  # noqa: RUF009 (wire() is a dataclasses.field)


@dataclass(frozen=True, kw_only=True)
class GroupBuyJoin(Struct):
    KIND: ClassVar[str] = "buy.join"
    buy: bytes = wire("buy", _EVENT_ID, "event id of the group buy")
    option: int = wire("opt", UInt(0, 15), "variant index")
    quantity: int = wire("qty", UInt(0, 1000), "units (0 withdraws)")


@dataclass(frozen=True, kw_only=True)
class LiveComment(Struct):
    KIND: ClassVar[str] = "live.comment"
    media: MediaRef = wire("media", Nested(MediaRef), "the media being watched")  # noqa: RUF009 (wire() is a dataclasses.field)
    offset: int = wire("at", UInt(), "timeline position, ms from the media start")
    text: str = wire("text", Text(1, 280), "the comment")
    color: int | None = wire("color", UInt(0, 0xFFFFFF), "RGB colour", optional=True)


EVENT_KINDS: dict[str, type[Struct]] = {
    cls.KIND: cls
    for cls in (
        Genesis, MemberAdd, MemberInvite, MemberJoin, MemberLeave, MemberRemove, MemberBan,
        RoleChange, DeviceRevoke, SenderKeyDistribution, Sealed, Post, Reply, Reaction, Edit,
        Delete, ShareCard, Poll, Vote, GroupBuy, GroupBuyJoin, LiveComment,
    )
}  # fmt: skip


def _parse_body(kind: str, body: Mapping[str, Any], path: str) -> Struct | None:
    cls = EVENT_KINDS.get(kind)
    return None if cls is None else cls.from_value(dict(body), path=path)


@dataclass(frozen=True, kw_only=True)
class InnerEvent(Struct):
    """The plaintext of a ``sealed`` event: a kind and its body, as in a clear event."""

    kind: str = wire("k", Text(1, 64), "event kind (not genesis, sealed or skey.dist)")
    body: Mapping[str, Any] = wire("b", AnyMap(64), "the body of that kind")

    def parsed(self) -> Struct | None:
        """The typed body (``None`` for an unknown kind); raises ``WireError`` if malformed."""
        if self.kind in ("genesis", "sealed", "skey.dist"):
            raise WireError("bad-value", f"{self.kind} cannot be sealed")
        return _parse_body(self.kind, self.body, "b")


# --- the event ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class GroupEvent(Struct):
    """One signed log entry. Build with :func:`sign_event`; parse with :func:`decode_event`."""

    group: bytes | None = wire("g", _KEY, "group id (absent only in genesis)", optional=True)
    author_device: bytes = wire("ad", _KEY, "author device key (signs the event)")
    author_account: bytes = wire("aa", _KEY, "author account key (device certificate binds)")
    seq: int = wire("seq", UInt(1, MAX_UINT), "position in the device's chain, from 1")
    prev: bytes | None = wire(
        "prev", _EVENT_ID, "event id of seq - 1 (absent iff seq = 1)", optional=True
    )
    deps: tuple[bytes, ...] = wire("deps", ListOf(_EVENT_ID, 0, 32), "heads of other authors seen")
    lamport: int = wire("lt", UInt(1, MAX_UINT), "Lamport time: 1 + max over prev and deps")
    ts: int = wire("ts", UInt(), "author's clock, ms since the Unix epoch")
    kind: str = wire("k", Text(1, 64, shared=True), "event kind")
    body: Mapping[str, Any] = wire("b", AnyMap(64), "the body of that kind")
    cert: bytes | None = wire(
        "cert",
        Bytes(low=1, high=256),
        "device certificate (crypto.md): on seq 1, or renewed",
        optional=True,
    )
    sig: bytes = wire("sig", Bytes(64), "Ed25519 by author device, context event")
    #: Not on the wire: derived at decode time. ``raw`` is the decoded map (read-only);
    #: the signed bytes are re-encoded from it only when :meth:`verify` is called.
    event_id: bytes = dataclasses.field(default=b"", compare=False)
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    parsed: Struct | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.seq == 1) != (self.prev is None):
            raise ValueError("prev must be absent exactly when seq is 1")
        if (self.kind == "genesis") != (self.group is None):
            raise ValueError("g must be absent exactly in genesis")
        if self.kind == "genesis" and (self.seq != 1 or self.deps or self.lamport != 1):
            raise ValueError("genesis is the first event of its chain: seq 1, lt 1, no deps")
        if len(set(self.deps)) != len(self.deps):
            raise ValueError("duplicate deps")

    @property
    def group_id(self) -> bytes:
        return self.event_id if self.group is None else self.group

    def verify(self) -> None:
        """Check the author device's signature (expensive: rate-limit before calling)."""
        if not self.raw:
            raise LocalProtocolError("a slim event cannot be verified: decode its bytes again")
        verify_signature(signed_bytes("event", self.raw), self.sig, self.author_device)

    def slim(self, **shared: Any) -> GroupEvent:
        """This event without the decoded map, body and signature it was parsed from
        (``raw``, ``body``, ``sig``: about two thirds of a decoded event's memory). What
        a log keeps once the event is verified and accepted: every other field,
        ``parsed`` included, stays; only :meth:`verify` needs the others, and the
        event's bytes give them back. ``shared``: fields to take as *equal* objects the
        caller already holds (a log's one copy of a key or an event id)."""
        if not self.raw and not self.sig and not shared:
            return self
        return _evolve(self, raw=_EMPTY, body=_EMPTY, sig=b"", **shared)


_EMPTY: Mapping[str, Any] = MappingProxyType({})

#: The slots of :class:`GroupEvent` (member descriptors: they set a frozen instance's
#: fields without its ``__setattr__``).
_SLOTS = tuple(GroupEvent.__dict__[f.name] for f in dataclasses.fields(GroupEvent))


def _evolve(event: GroupEvent, **changes: Any) -> GroupEvent:
    """A copy of ``event`` with ``changes``, for fields no check reads (the derived
    ``event_id``, ``raw`` and ``parsed``; ``body`` and ``sig`` dropped; equal shared
    objects). ``dataclasses.replace`` would run ``__init__`` and its checks again: two
    of them per stored event were about a fifth of a node's start-up."""
    new = object.__new__(GroupEvent)
    for slot in _SLOTS:
        slot.__set__(new, slot.__get__(event))
    for name, value in changes.items():
        GroupEvent.__dict__[name].__set__(new, value)
    return new


def decode_event(data: bytes, *, slim: bool = False) -> GroupEvent:
    """Strictly decode one event (no signature check: call :meth:`GroupEvent.verify`).
    ``slim``: without the decoded map and body (see :meth:`GroupEvent.slim`), for bytes
    this node already verified (a store's events), whose canonical encoding is then not
    checked again."""
    raw = decode_map(data, max_size=MAX_EVENT, recheck=not slim)
    event = GroupEvent.from_value(raw)
    parsed = _parse_body(event.kind, event.body, "b")
    if slim:
        return _evolve(
            event, event_id=event_id_of(data), raw=_EMPTY, body=_EMPTY, sig=b"", parsed=parsed
        )
    return _evolve(event, event_id=event_id_of(data), raw=MappingProxyType(raw), parsed=parsed)


def sign_event(
    body: Struct,
    *,
    signing_key: SigningKey,
    account: bytes,
    group: bytes | None,
    seq: int,
    prev: bytes | None,
    deps: tuple[bytes, ...] = (),
    lamport: int,
    now: int,
    cert: bytes | None = None,
) -> bytes:
    """Encode and sign an event; returns its exact bytes (the event id is their hash).

    Raises :class:`LocalProtocolError` (never ``WireError``: the bad input is ours) if the
    result would not pass :func:`decode_event`.
    """
    value: dict[str, Any] = {
        "ad": bytes(signing_key.verify_key),
        "aa": account,
        "seq": seq,
        "deps": list(deps),
        "lt": lamport,
        "ts": now,
        "k": body.KIND,  # type: ignore[attr-defined]
        "b": body.to_value(),
    }
    if group is not None:
        value["g"] = group
    if prev is not None:
        value["prev"] = prev
    if cert is not None:
        value["cert"] = cert
    value["sig"] = sign_map("event", value, signing_key)
    try:
        data = encode_value(value)
        decode_event(data)  # refuses to emit anything our own decoder would reject
    except WireError as exc:
        raise LocalProtocolError(f"refusing to sign an invalid event: {exc}") from exc
    return data
