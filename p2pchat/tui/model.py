"""What the screens show, as plain values built from RPC results (no Textual, no I/O).

RPC maps become :class:`ChatLine` (one message of a DM or a group) and
:class:`InboxEntry` (one row of the inbox); :class:`Names` turns account keys into
what people call each other; :class:`Clock` formats times (tests pin it so snapshots
do not depend on the day they run); :func:`parse_command` reads ``/commands``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from p2pchat_crypto.identity import fingerprint_of

__all__ = [
    "DELIVERY_MARKS",
    "ChatLine",
    "FileRef",
    "files_of",
    "Clock",
    "InboxEntry",
    "Names",
    "mentions",
    "dm_line",
    "group_line",
    "sort_inbox",
    "parse_command",
    "format_offset",
    "parse_offset",
]

#: Delivery marks of our own direct messages, as shown after the time.
DELIVERY_MARKS: Mapping[str, str] = {
    "queued": "\u25f7 queued",
    "sent": "\u2713 sent",
    "delivered": "\u2713\u2713 delivered",
    "failed": "\u2717 failed",
}


@dataclass(frozen=True, slots=True)
class FileRef:
    """An attachment as a message names it (rpc.md FILE_REF): ``name`` is the sender's."""

    file_id: str
    name: str
    mime: str
    size: int
    thumbnail: bytes | None = None


def files_of(m: Mapping[str, Any]) -> tuple[FileRef, ...]:
    """The ``files`` of a MESSAGE or GROUP_MSG (a malformed entry is left out)."""
    found = []
    for f in m.get("files") or ():
        try:
            thumb = f.get("thumbnail")
            found.append(
                FileRef(
                    file_id=str(f["file_id"]),
                    name=str(f.get("name") or "file"),
                    mime=str(f.get("mime") or ""),
                    size=int(f.get("size") or 0),
                    thumbnail=bytes.fromhex(thumb) if isinstance(thumb, str) else None,
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return tuple(found)


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One message of a conversation, whoever sent it; ``key`` is its message/event id."""

    key: str
    author: str  # account key, hex
    ts: int
    text: str
    mine: bool
    kind: str = "post"
    state: str | None = None  # delivery state of our own DMs
    reason: str | None = None  # why delivery failed
    reply_to: str | None = None
    reactions: Mapping[str, int] = field(default_factory=dict)
    edited: bool = False
    deleted: bool = False
    sealed: bool = False
    share: Mapping[str, Any] | None = None
    seq: int | None = None  # a DM's pagination key
    files: tuple[FileRef, ...] = ()


def dm_line(m: Mapping[str, Any]) -> ChatLine:
    """A ``dm.history`` / ``dm.send`` MESSAGE."""
    mine = m["direction"] == "out"
    return ChatLine(
        key=str(m["message_id"]),
        author=str(m["author"]),
        ts=int(m["sent_at"]),
        text=str(m["text"]),
        mine=mine,
        kind="post",
        state=str(m["state"]) if mine else None,
        reason=m.get("failure_reason"),
        reactions={str(k): int(v) for k, v in (m.get("reactions") or {}).items()},
        edited=bool(m.get("edited")),
        deleted=bool(m.get("deleted")),
        seq=int(m["seq"]),
        files=files_of(m),
    )


def group_line(m: Mapping[str, Any], me: str) -> ChatLine:
    """A ``groups.history`` GROUP_MSG."""
    share = m.get("share")
    return ChatLine(
        key=str(m["event_id"]),
        author=str(m["author"]),
        ts=int(m["sent_at"]),
        text=str(m["text"]),
        mine=m["author"] == me,
        kind=str(m["kind"]),
        reply_to=m.get("reply_to"),
        reactions={str(k): int(v) for k, v in (m.get("reactions") or {}).items()},
        edited=bool(m.get("edited")),
        deleted=bool(m.get("deleted")),
        sealed=bool(m.get("sealed")),
        share=share if isinstance(share, Mapping) else None,
        files=files_of(m),
    )


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One row of the inbox: a DM, a contact request or a group."""

    key: str  # "dm:<account>", "request:<account>" or "group:<group id>"
    kind: str  # "dm", "request", "public", "private" or "live"
    title: str
    target: str  # what the RPC methods take: a conversation id, an account or a group id
    last_activity: int
    unread: int = 0
    muted: bool = False
    status: str = "active"  # a group's: active, left or removed
    mentions: int = 0  # unread messages that mention us (@our display name)

    @property
    def is_group(self) -> bool:
        return self.key.startswith("group:")


def sort_inbox(entries: Iterable[InboxEntry]) -> list[InboxEntry]:
    """Contact requests first, then most recent activity first (ties by title)."""
    return sorted(
        entries,
        key=lambda e: (e.kind != "request", -e.last_activity, e.title.casefold(), e.key),
    )


def mentions(text: str, name: str | None) -> bool:
    """Whether ``text`` mentions ``name`` as ``@name`` (case-folded, not inside a word)."""
    if not name or not name.strip():
        return False
    pattern = r"(?<!\w)@" + re.escape(name.strip().casefold()) + r"(?!\w)"
    return re.search(pattern, text.casefold()) is not None


class Names:
    """Account keys to names: the node's labels for contacts (README "Names": "Bob",
    "Bob?" until verified, "~Bob" for a name they only claim), and who is verified."""

    def __init__(self) -> None:
        self.me = ""
        self.about: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._verified: set[str] = set()

    def load(
        self,
        contacts: Iterable[Mapping[str, Any]],
        profiles: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Contacts by their labels; other people whose profile we have by the name it
        claims (``~Name``), with its "about" text for the detail views."""
        self.about = {str(p["account"]): str(p.get("about") or "") for p in profiles}
        self._names = {str(p["account"]): "~" + str(p["name"]) for p in profiles if p.get("name")}
        self._names.update({str(c["account"]): str(c["label"]) for c in contacts})
        self._verified = {str(c["account"]) for c in contacts if c.get("verified")}

    def add(self, account: str, name: str | None) -> None:
        if name and account not in self._names:
            self._names[account] = name

    def label(self, account: str) -> str:
        """``you``, the contact's label, or the start of the fingerprint (unknown people,
        as the node names a contact it knows no name for)."""
        if account == self.me:
            return "you"
        found = self._names.get(account)
        if found:
            return found
        try:
            return fingerprint_of(bytes.fromhex(account))[:9]
        except ValueError:
            return account[:8]

    def verified(self, account: str) -> bool:
        return account in self._verified


class Clock:
    """Formats times in the local time zone (or ``tz``); tests pass a fixed one."""

    def __init__(self, tz: dt.tzinfo | None = None) -> None:
        self._tz = tz

    def _at(self, ms: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ms / 1000, tz=self._tz)

    def time(self, ms: int) -> str:
        return self._at(ms).strftime("%H:%M")

    def day(self, ms: int) -> str:
        """The day separator's label; also the key that tells two days apart."""
        return self._at(ms).strftime("%a %d %b %Y")

    def short(self, ms: int, now_ms: int) -> str:
        """Inbox column: the time for today, the date otherwise; ``""`` for never."""
        if ms <= 0:
            return ""
        if self.day(ms) == self.day(now_ms):
            return self.time(ms)
        return self._at(ms).strftime("%d %b")


def parse_command(text: str) -> tuple[str, str] | None:
    """``"/react 👍"`` -> ``("react", "👍")``; ``None`` for a message (``//`` escapes)."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, rest = stripped[1:].partition(" ")
    return name.lower(), rest.strip()


def format_offset(ms: int) -> str:
    """A timeline position as people read it: ``[h:]mm:ss``."""
    seconds = max(ms, 0) // 1000
    minutes, sec = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours}:{mins:02d}:{sec:02d}" if hours else f"{mins:02d}:{sec:02d}"


def parse_offset(text: str) -> int:
    """``"1:02:03"``, ``"2:03"`` or ``"123"`` (seconds) -> milliseconds; ValueError else."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a time: {text!r} (use [h:]mm:ss or seconds)")
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds * 1000
