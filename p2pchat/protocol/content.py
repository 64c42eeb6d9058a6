"""Extensible message content: a namespaced type, a body map and a plain-text fallback.

An application embedding the node adds its own kinds (``"com.example/recipe"``) without
a protocol change: a node that does not know a type shows ``text``. The types this
release interprets are listed in :data:`KNOWN_TYPES`; their bodies are checked by
:func:`parse_known_body` only when a caller asks, so unknown or malformed application
bodies never make the surrounding message undecodable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from p2pchat.errors import ConfigError, WireError

from .codec import AnyMap, Bool, Bytes, ListOf, Nested, Struct, Text, UInt, wire

__all__ = [
    "TYPE_PATTERN_DOC",
    "KNOWN_TYPES",
    "MediaRef",
    "Price",
    "Content",
    "TextBody",
    "ImageBody",
    "ReactBody",
    "EditBody",
    "DeleteBody",
    "AMEND_TYPES",
    "parse_known_body",
    "MAX_TEXT_BYTES",
    "MAX_THUMB_BYTES",
    "MAX_ATTACHMENTS",
    "attachments_of",
    "check_outgoing",
]

#: The most an inline thumbnail (``media-ref`` ``th``) may hold.
MAX_THUMB_BYTES = 8192
#: The most attachments one text message carries.
MAX_ATTACHMENTS = 16

#: The most a content's ``text`` may hold, in bytes of UTF-8 (not characters).
MAX_TEXT_BYTES = 16_384

TYPE_PATTERN_DOC = "namespace/name, e.g. p2pchat/text or com.example/recipe"


@dataclass(frozen=True, kw_only=True)
class MediaRef(Struct):
    """A reference to a blob fetched out of band (content-addressed, so it can be checked)."""

    hash: bytes = wire("h", Bytes(32), "BLAKE2b-256 of the blob")
    mime: str = wire("mime", Text(1, 127), "media type, e.g. image/jpeg")
    size: int = wire("size", UInt(), "blob size in bytes")
    url: str | None = wire(
        "url", Text(1, 2048), "where to fetch it (https or /p2p/...)", optional=True
    )
    key: bytes | None = wire(
        "k", Bytes(32), "per-file key of an encrypted blob (h is then its blob id)", optional=True
    )
    name: str | None = wire("fn", Text(1, 255), "file name, for display only", optional=True)
    thumb: bytes | None = wire(
        "th",
        Bytes(low=1, high=MAX_THUMB_BYTES),
        "small JPEG preview of an image, inline",
        optional=True,
    )

    def __repr__(self) -> str:  # the key is a secret: never in logs or exceptions
        return f"MediaRef(hash={self.hash.hex()[:16]}, mime={self.mime!r}, size={self.size})"


@dataclass(frozen=True, kw_only=True)
class Price(Struct):
    """An amount in the currency's minor unit (cents), never a float."""

    amount: int = wire("amt", UInt(), "amount in minor units (e.g. cents)")
    currency: str = wire("cur", Text(3, 3), "ISO 4217 code, e.g. EUR")


def _check_type(value: str) -> None:
    ns, sep, name = value.partition("/")
    if not sep or not ns or not name or "/" in name or not value.isascii():
        raise ValueError("content type must be ASCII namespace/name")


@dataclass(frozen=True, kw_only=True, slots=True)
class Content(Struct):
    """The user-visible payload of a direct message or a group post."""

    type: str = wire("type", Text(3, 64, shared=True), TYPE_PATTERN_DOC)
    body: Mapping[str, Any] = wire("body", AnyMap(64), "type-specific fields")
    text: str = wire(
        "text", Text(0, MAX_TEXT_BYTES), "plain-text fallback shown by nodes that do not know type"
    )

    def __post_init__(self) -> None:
        _check_type(self.type)

    @property
    def known(self) -> bool:
        return self.type in KNOWN_TYPES


@dataclass(frozen=True, kw_only=True)
class TextBody(Struct):
    """``p2pchat/text``: the text is in ``Content.text``; the body may name a format."""

    format: str | None = wire("fmt", Text(1, 16), "markup: plain or markdown", optional=True)
    attachments: tuple[MediaRef, ...] | None = wire(
        "att", ListOf(Nested(MediaRef), 1, MAX_ATTACHMENTS), "attached files", optional=True
    )


@dataclass(frozen=True, kw_only=True)
class ImageBody(Struct):
    """``p2pchat/image``: one image, with the caption in ``Content.text``."""

    media: MediaRef = wire("media", Nested(MediaRef), "the image blob")  # noqa: RUF009 (wire() is a dataclasses.field)
    width: int | None = wire("w", UInt(1, 65535), "pixels", optional=True)
    height: int | None = wire("h", UInt(1, 65535), "pixels", optional=True)


_DM_ID = Bytes(16)


@dataclass(frozen=True, kw_only=True)
class ReactBody(Struct):
    """``p2pchat/react`` (direct messages): a per (message, emoji, sender) switch."""

    target: bytes = wire("to", _DM_ID, "message id reacted to")
    emoji: str = wire("emoji", Text(1, 32), "the reaction")
    on: bool = wire("on", Bool(), "true adds, false removes")


@dataclass(frozen=True, kw_only=True)
class EditBody(Struct):
    """``p2pchat/edit`` (direct messages): the new text is in ``Content.text``."""

    target: bytes = wire("to", _DM_ID, "message id edited (the sender's own only)")


@dataclass(frozen=True, kw_only=True)
class DeleteBody(Struct):
    """``p2pchat/delete`` (direct messages): the sender withdraws their own message."""

    target: bytes = wire("to", _DM_ID, "message id deleted (the sender's own only)")


KNOWN_TYPES: dict[str, type[Struct]] = {
    "p2pchat/text": TextBody,
    "p2pchat/image": ImageBody,
    "p2pchat/react": ReactBody,
    "p2pchat/edit": EditBody,
    "p2pchat/delete": DeleteBody,
}

#: Direct-message contents that change an earlier message instead of being one
#: (``protocol/dm_amend.py`` folds them; wire.md §7).
AMEND_TYPES = frozenset({"p2pchat/react", "p2pchat/edit", "p2pchat/delete"})


def parse_known_body(content: Content) -> Struct | None:
    """The typed body of a known content type, ``None`` for an unknown type.

    Raises :class:`WireError` if a *known* type carries a malformed body.
    """
    cls = KNOWN_TYPES.get(content.type)
    if cls is None:
        return None
    body = cls.from_value(dict(content.body), path="body")
    if not isinstance(body, Struct):  # pragma: no cover - from_value always builds cls
        raise WireError("invalid", "body")
    return body


def attachments_of(content: Content) -> tuple[MediaRef, ...]:
    """The media a content names (attachments, an image, a share card's picture);
    a malformed body names none."""
    try:
        if content.type == "p2pchat/text" and "att" in content.body:
            body = TextBody.from_value(dict(content.body), path="body")
            return body.attachments or ()
        if content.type == "p2pchat/image":
            return (ImageBody.from_value(dict(content.body), path="body").media,)
    except WireError:
        return ()
    return ()


def check_outgoing(content: Content, *, max_size: int = 64 * 1024) -> None:
    """Refuse, before anything is signed or stored, content every recipient would refuse.

    One rule for direct messages and group posts: a text message needs some text (not
    only spaces), and every field is checked in the unit the wire checks it in (a
    text's limit is :data:`MAX_TEXT_BYTES` bytes of UTF-8, so 9,000 "é" are too many).
    Raises :class:`ConfigError` with a message for the person who typed it.
    """
    size = len(content.text.encode())
    if size > MAX_TEXT_BYTES:
        raise ConfigError(
            f"the message is too long: {size:,} bytes of UTF-8 text, the limit is "
            f"{MAX_TEXT_BYTES:,} bytes (non-ASCII characters take 2 to 4 bytes each)"
        )
    if content.type == "p2pchat/text" and not content.text.strip() and "att" not in content.body:
        raise ConfigError("the message is empty: write some text (not only spaces)")
    try:
        Content.from_bytes(content.to_bytes(), max_size=max_size)
    except (WireError, ValueError) as exc:
        raise ConfigError(f"invalid content: {exc}") from None
