"""Reactions, edits and deletions of direct messages, folded over a conversation (sans-IO).

A DM that changes an earlier one is an ordinary message whose content type is one of
:data:`~p2pchat.protocol.content.AMEND_TYPES` (wire.md §7): it travels, is acknowledged
and stored like any other, and readers fold it into its target. The rules, applied by
every receiver (a sender's node cannot be trusted to have checked them):

* a **reaction** is a per (message, emoji, sender account) switch; the later one (by the
  conversation's ``seq``) wins;
* an **edit** applies only to a message of the same sender account (and not to another
  amendment); the later one wins; it replaces the text and keeps the target's body;
* a **delete** applies only to a message of the same sender account; the target shows
  no text, no attachments and no reactions, and later edits of it are ignored;
* an amendment whose body is malformed, or whose target is unknown, is not applied
  (a malformed one is shown as its fallback text, like any malformed known body); an
  amendment stored before its target (a delayed original) still applies to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pchat.errors import WireError

from .content import AMEND_TYPES, Content, DeleteBody, EditBody, ReactBody

__all__ = ["Amendment", "Folded", "FoldInput", "amendment_of", "fold_amendments"]

Amendment = ReactBody | EditBody | DeleteBody

_BODIES: dict[str, type[ReactBody] | type[EditBody] | type[DeleteBody]] = {
    "p2pchat/react": ReactBody,
    "p2pchat/edit": EditBody,
    "p2pchat/delete": DeleteBody,
}


def amendment_of(content: Content | None) -> Amendment | None:
    """The well-formed amendment a content carries, else ``None`` (a message)."""
    if content is None or content.type not in AMEND_TYPES:
        return None
    try:
        body = _BODIES[content.type].from_value(dict(content.body), path="body")
    except WireError:
        return None
    if isinstance(body, EditBody) and not content.text.strip():
        return None
    assert isinstance(body, ReactBody | EditBody | DeleteBody)
    return body


@dataclass(frozen=True, slots=True)
class FoldInput:
    """One stored message, in ascending ``seq``: its id, sender account and content."""

    message_id: bytes
    author: bytes
    content: Content | None


@dataclass(slots=True)
class Folded:
    """What amendments did to one message."""

    text: str | None = None  # the latest edit's text
    edited: bool = False
    deleted: bool = False
    reactions: dict[str, set[bytes]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {emoji: len(who) for emoji, who in sorted(self.reactions.items()) if who}


def fold_amendments(messages: Iterable[FoldInput]) -> tuple[dict[bytes, Folded], set[bytes]]:
    """Fold ``messages`` (ascending ``seq``): the state of every amended message, and the
    ids of the well-formed amendments (which readers do not show as messages)."""
    items = list(messages)
    authors: dict[bytes, bytes] = {}
    bodies: list[tuple[FoldInput, Amendment]] = []
    for item in items:  # first every message, so an amendment may arrive before its target
        body = amendment_of(item.content)
        if body is None:
            authors[item.message_id] = item.author
        else:
            bodies.append((item, body))
    folded: dict[bytes, Folded] = {}
    for item, body in bodies:
        target_author = authors.get(body.target)
        if target_author is None:
            continue  # unknown target, or another amendment
        state = folded.setdefault(body.target, Folded())
        if isinstance(body, ReactBody):
            if state.deleted:
                continue
            who = state.reactions.setdefault(body.emoji, set())
            if body.on:
                who.add(item.author)
            else:
                who.discard(item.author)
        elif target_author != item.author or state.deleted:
            continue  # only one's own messages are edited or deleted
        elif isinstance(body, EditBody):
            assert item.content is not None
            state.text, state.edited = item.content.text, True
        else:
            state.deleted, state.text = True, None
            state.reactions.clear()
    return folded, {item.message_id for item, _ in bodies}
