"""Messages, polls and cards as rich ``Text``: every peer string through :func:`peer_text`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text

from p2pchat.text import size_text

from ..inert import peer_text
from ..model import DELIVERY_MARKS, ChatLine, Clock, FileRef, Names
from ..thumbs import thumbnail_text

__all__ = ["render_message", "render_poll", "render_buy", "render_share", "render_file"]

_BAR = 12


def _author(line: ChatLine, names: Names) -> Text:
    return peer_text(names.label(line.author), "bold" if not line.mine else "bold italic")


def render_message(
    line: ChatLine,
    names: Names,
    clock: Clock,
    *,
    quoted: ChatLine | None = None,
    tally: Mapping[str, Any] | None = None,
    buy: Mapping[str, Any] | None = None,
) -> Text:
    """A message: author, time, delivery mark, quote, text or card, reactions."""
    out = _author(line, names)
    out.append("  " + clock.time(line.ts), style="dim")
    if line.state is not None:
        mark = DELIVERY_MARKS.get(line.state, line.state)
        out.append("  " + mark, style="red" if line.state == "failed" else "dim")
        if line.state == "failed" and line.reason:
            out.append(": ")
            out.append_text(peer_text(line.reason, "red", limit=80))
    if line.edited and not line.deleted:
        out.append("  (edited)", style="dim")
    if line.reply_to is not None:
        out.append("\n\u2502 ", style="dim")
        if quoted is None:
            out.append("(a message not loaded)", style="dim italic")
        else:
            out.append_text(peer_text(names.label(quoted.author) + ": ", "dim bold"))
            out.append_text(peer_text(quoted.text or "(no text)", "dim italic", limit=70))
    out.append("\n")
    if line.deleted:
        out.append("(deleted)", style="dim italic")
    elif line.sealed:
        out.append("(encrypted: waiting for the key)", style="dim italic")
    elif tally is not None:
        out.append_text(render_poll(tally))
    elif buy is not None:
        out.append_text(render_buy(buy))
    elif line.kind == "share":
        out.append_text(render_share(line))
    elif line.text or not line.files:
        out.append_text(peer_text(line.text, multiline=True))
    if not line.deleted:
        for i, ref in enumerate(line.files):
            if line.text or i or line.kind == "share":
                out.append("\n")
            out.append_text(render_file(ref))
    if line.reactions:
        out.append("\n")
        for i, (emoji, count) in enumerate(sorted(line.reactions.items())):
            if i:
                out.append("  ")
            out.append_text(peer_text(emoji, limit=4))
            out.append(f" {count}", style="dim")
    return out


def render_file(ref: FileRef) -> Text:
    """``📎 name  12.3 KB  image/jpeg`` and, for an image with a thumbnail (and Pillow),
    the thumbnail drawn in half blocks; ``f`` on the message saves it."""
    out = Text("\U0001f4ce ", style="bold")
    out.append_text(peer_text(ref.name, "bold underline", limit=48))
    out.append(f"  {size_text(ref.size)}", style="dim")
    if ref.mime:
        out.append_text(peer_text("  " + ref.mime, "dim", limit=40))
    if ref.mime.startswith("image/"):
        picture = thumbnail_text(ref.thumbnail) if ref.thumbnail else None
        out.append("\n")
        if picture is not None:
            out.append_text(picture)
        else:
            out.append("[image: f saves it]", style="dim italic")
    return out


def render_poll(tally: Mapping[str, Any]) -> Text:
    """``▤ question`` then one bar per option, numbered for voting with the keyboard."""
    out = Text("\u25a4 Poll: ", style="bold")
    out.append_text(peer_text(str(tally["question"]), "bold"))
    counts = [int(c) for c in tally["counts"]]
    most = max(counts, default=0) or 1
    for i, (option, count) in enumerate(zip(tally["options"], counts, strict=False)):
        filled = round(_BAR * count / most)
        out.append(f"\n {i + 1}) ")
        out.append_text(peer_text(str(option), limit=30))
        out.append(" " + "\u2588" * filled + "\u2591" * (_BAR - filled) + f" {count}")
    voters = int(tally.get("voters", 0))
    hint = "several choices" if tally.get("multi") else "one choice"
    out.append(f"\n {voters} voter{'s' if voters != 1 else ''} \u00b7 {hint}", style="dim")
    out.append(" \u00b7 select and press 1-9 to vote", style="dim")
    return out


def _price(price: Mapping[str, Any] | None) -> str:
    if not price:
        return ""
    return f"{int(price['amount']) / 100:.2f} {price['currency']}"


def render_share(line: ChatLine) -> Text:
    """A share card: title, link, price and note."""
    out = Text("\U0001f517 ", style="bold")
    out.append_text(peer_text(line.text, "bold", limit=120))
    card = line.share or {}
    if card.get("url"):
        out.append("\n   ")
        out.append_text(peer_text(str(card["url"]), "underline", limit=200))
    price = _price(card.get("price"))
    if price:
        out.append("\n   ")
        out.append_text(peer_text(price))
    if card.get("note"):
        out.append("\n   ")
        out.append_text(peer_text(str(card["note"]), "italic", multiline=True))
    return out


def render_buy(buy: Mapping[str, Any]) -> Text:
    """A group buy: title, price, units per option, quota and state."""
    out = Text("\U0001f6d2 Group buy: ", style="bold")
    out.append_text(peer_text(str(buy["title"]), "bold", limit=120))
    price = _price(buy.get("price"))
    if price:
        out.append(f"  {price} each", style="dim")
    for i, (option, units) in enumerate(zip(buy["options"], buy["units"], strict=False)):
        out.append(f"\n {i + 1}) ")
        out.append_text(peer_text(str(option), limit=30))
        out.append(f"  {units} unit{'s' if units != 1 else ''}")
    state = "reached" if buy.get("reached") else "open"
    people = len(buy.get("participants", []))
    out.append(
        f"\n {buy['total']}/{buy['quota']} units \u00b7 {people} joined \u00b7 {state}",
        style="dim",
    )
    out.append(" \u00b7 /join-buy N QTY", style="dim")
    return out
