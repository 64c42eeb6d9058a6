"""How ``groups read`` shows one message: time, short id, author, text, and for polls,
group buys and share cards their content and tallies. Everything a peer wrote is made
inert (:func:`._output.one_line`, :func:`._output.message_body`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from p2pchat_crypto.identity import fingerprint_of

from ._output import message_body, one_line
from .files import files_line

__all__ = [
    "format_group_message",
    "format_notice",
    "format_reaction",
    "format_poll",
    "format_buy",
    "short",
    "person",
]


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def short(hex_id: str) -> str:
    return hex_id[:8]


def person(account: str, names: Mapping[str, str]) -> str:
    """How a person is named, inert: their label (``contacts.list``'s ``label``, README
    "Names"), else the start of their fingerprint, as for a contact with no name."""
    label = names.get(account)
    if label is None:
        try:
            label = fingerprint_of(bytes.fromhex(account))[:9]
        except ValueError:
            label = short(account)
    return one_line(label)


def _money(price: dict[str, Any] | None) -> str:
    if not price:
        return ""
    return f" {price['amount'] / 100:.2f} {price['currency']}"


def format_poll(poll: dict[str, Any], now: int) -> str:
    """A poll with its question, numbered options and their counts (what `vote` takes)."""
    state = f"open until {_time(poll['deadline'])}" if now <= poll["deadline"] else "closed"
    kind = "several choices" if poll["multi"] else "one choice"
    options = "  ".join(
        f"{n}) {one_line(option)}: {count}"
        for n, (option, count) in enumerate(zip(poll["options"], poll["counts"], strict=True), 1)
    )
    return f"[poll] {one_line(poll['question'])}  {options}  ({kind}, {state})"


def format_buy(buy: dict[str, Any], now: int) -> str:
    """A group buy: title, price, units joined of the quota and its state."""
    if buy["reached"]:
        state = "reached"
    else:
        state = f"open until {_time(buy['deadline'])}" if now <= buy["deadline"] else "failed"
    return (
        f"[group buy] {one_line(buy['title'])}{_money(buy['price'])}  "
        f"{buy['total']}/{buy['quota']} units ({state})"
    )


def _content_of(message: dict[str, Any], view: dict[str, Any] | None, now: int) -> str:
    """What a poll, group buy or share card says (its text alone says little)."""
    share = message.get("share")
    if share:
        note = f"  {message_body(share['note'])}" if share.get("note") else ""
        return (
            f"[share] {one_line(share['title'])}{_money(share['price'])}  "
            f"{one_line(share['url'])}{note}{_photo(share)}"
        )
    for key, id_key, render in (
        ("polls", "poll_id", format_poll),
        ("buys", "buy_id", format_buy),
    ):
        for item in (view or {}).get(key, ()):
            if item[id_key] == message["event_id"]:
                return render(item, now)
    attached = files_line(message)
    if message["text"]:
        return " ".join(t for t in (message_body(message["text"]), attached) if t)
    return attached or f"[{message['kind']}]"


def _photo(share: dict[str, Any]) -> str:
    image = share.get("image")
    return f"  [photo {image['file_id'][:12]}]" if image else ""


def format_notice(notice: dict[str, Any], names: dict[str, str]) -> str:
    """A removal or ban, as members see it among the messages."""
    by = person(notice["author"], names)
    whom = person(notice["account"], names)
    done = "banned" if notice["kind"] == "member.ban" else "removed"
    until = f" until {_time(notice['until'])}" if notice.get("until") else ""
    reason = f": {one_line(notice['reason'])}" if notice.get("reason") else ""
    stamp = f"{_time(notice['sent_at'])}  {short(notice['event_id'])}"
    return f"{stamp}  — {by} {done} {whom}{until}{reason}"


def format_reaction(event: dict[str, Any], names: dict[str, str]) -> str:
    """A reaction as ``read --follow`` prints it (the event of a ``group.message``)."""
    who = person(event["author"], names)
    did = "reacted" if event.get("on", True) else "took back"
    target = short(event.get("target") or "")
    return f"{_time(event['sent_at'])}  {who} {did} {one_line(event['text'])} on {target}"


def format_group_message(
    message: dict[str, Any],
    names: dict[str, str],
    view: dict[str, Any] | None = None,
    now: int = 0,
) -> str:
    """One line for a person: time, short id, author, text, reply and reaction marks;
    a poll, group buy or share card with its content (and, given the group's ``view``,
    its tally)."""
    who = person(message["author"], names)
    if message["deleted"]:
        text = "(deleted)"
    elif message["sealed"]:
        text = "(encrypted: no key yet)"
    else:
        text = _content_of(message, view, now)
    reply = f"↪ {short(message['reply_to'])} " if message.get("reply_to") else ""
    edited = " (edited)" if message.get("edited") else ""
    reactions = message.get("reactions") or {}
    marks = "  " + " ".join(f"{one_line(e)}{n}" for e, n in reactions.items()) if reactions else ""
    stamp = f"{_time(message['sent_at'])}  {short(message['event_id'])}"
    return f"{stamp}  {who}: {reply}{text}{edited}{marks}"
