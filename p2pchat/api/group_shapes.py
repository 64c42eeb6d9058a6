"""Shapes of the ``groups.*`` RPC methods: what people type in, what results look like.

Split from :mod:`p2pchat.api.groups` (the handlers) so each stays small. Pure
functions over the node's value objects: no I/O, no node, easy to test on their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, TypeVar

from p2pchat.api.shapes import files_of, media_to_dict
from p2pchat.errors import ConfigError, NotFoundError, WireError
from p2pchat.protocol.codec import Struct
from p2pchat.protocol.content import Price
from p2pchat.protocol.group_content import GroupView
from p2pchat.protocol.group_content import Message as GroupViewMessage
from p2pchat.protocol.group_events import GroupEvent, MemberBan, MemberRemove, ShareCard
from p2pchat.protocol.group_invite import INVITE_PREFIX
from p2pchat.protocol.group_state import Membership
from p2pchat.storage.records import GroupInfo, GroupStatus
from p2pchat.vocabulary import add_deprecated

__all__ = [
    "group_notice_to_dict",
    "resolve_group",
    "is_hex",
    "parse_event_id",
    "checked",
    "price_param",
    "group_to_dict",
    "group_info_to_dict",
    "group_message_to_dict",
    "group_view_to_dict",
    "event_result",
]

_GROUP_HEX: Final = 64
_MIN_PREFIX: Final = 4
S = TypeVar("S", bound=Struct)


# -- resolving what people type -----------------------------------------------------------


def resolve_group(text: str, groups: Iterable[GroupInfo]) -> bytes:
    """The group a person means by ``text``: a full id, else a unique name or id prefix.

    A full id is returned even for a group we are not in (the node then says 1001), so
    scripts get the node's own answer. Among several matches, groups we are still
    active in win: a group left long ago should not make a current one ambiguous.
    """
    cleaned = text.strip().lower()
    if len(cleaned) == _GROUP_HEX and is_hex(cleaned):
        return bytes.fromhex(cleaned)
    if cleaned.startswith(INVITE_PREFIX):  # a secret: never echo it in the error
        raise ConfigError("that is an invite link, not a group; join with it first")
    known = list(groups)
    wanted = text.strip().casefold()
    matches = [g for g in known if g.name.casefold() == wanted]
    if not matches and len(cleaned) >= _MIN_PREFIX and is_hex(cleaned):
        matches = [g for g in known if g.group_id.hex().startswith(cleaned)]
    active = [g for g in matches if g.status is GroupStatus.ACTIVE]
    if len(active) > 1 or (not active and len(matches) > 1):
        raise ConfigError(
            f"{len(active) or len(matches)} groups match {text!r}; give more of the group id"
        )
    if active or matches:
        return (active or matches)[0].group_id
    raise NotFoundError(
        f"no group named {text!r}; give the group id (64 hex digits) or see `p2pchat groups list`"
    )


def is_hex(text: str) -> bool:
    return all(ch in "0123456789abcdef" for ch in text)


def parse_event_id(text: str, what: str) -> bytes:
    cleaned = text.strip().lower()
    if len(cleaned) != _GROUP_HEX or not is_hex(cleaned):
        raise ConfigError(f"{what} must be an event id (64 hex digits)")
    return bytes.fromhex(cleaned)


def checked(body: S, what: str) -> S:
    """``body`` if the group could accept it; else a 1004 naming what is wrong."""
    try:
        body.check()
    except (WireError, ValueError) as exc:
        raise ConfigError(f"invalid {what}: {exc}") from None
    return body


def price_param(amount: int | None, currency: str | None) -> Price | None:
    if amount is None and currency is None:
        return None
    if amount is None or currency is None:
        raise ConfigError("price and currency go together (amount in minor units, ISO 4217)")
    return checked(Price(amount=amount, currency=currency.upper()), "price")


# -- results ------------------------------------------------------------------------------


def group_to_dict(info: GroupInfo, state: Membership | None, me: bytes) -> dict[str, Any]:
    """A group as listed; ``state`` is ``None`` for a group whose log is not loaded
    (one we left or were removed from), which has no current role or member count."""
    out: dict[str, Any] = {
        "group_id": info.group_id.hex(),
        "name": info.name,
        "kind": info.kind,
        "tags": list(info.tags),
        "status": info.status.value,
        "joined_at": info.joined_at,
        "updated_at": info.updated_at,
        "role": None,
        "members": None,
        "epoch": None,
    }
    if state is not None:
        descriptor = state.descriptor
        out.update(
            name=descriptor.name,
            tags=list(descriptor.tags),
            role=state.role_of(me),
            members=len(state.members),
            epoch=state.epoch,
        )
    return out


def group_info_to_dict(info: GroupInfo, state: Membership, me: bytes) -> dict[str, Any]:
    rules = state.descriptor.rules
    return {
        **group_to_dict(info, state, me),
        "about": state.descriptor.about,
        "rules": {
            "join": rules.join,
            "post": rules.post,
            "invite": rules.invite,
            "slow_seconds": rules.slow,
            "max_members": rules.max_members,
        },
        "roles": state.count_by_role(),
        "banned": [
            {"account": account.hex(), "until": until}
            for account, until in sorted(state.banned.items())
        ],
        "pending": sorted(a.hex() for a in state.pending),
    }


def group_message_to_dict(message: GroupViewMessage) -> dict[str, Any]:
    """One visible message with everything later already folded in (edits, reactions)."""
    content = message.content
    record = {
        "event_id": message.ref.event_id.hex(),
        "author": message.ref.account.hex(),
        "device": message.ref.device.hex(),
        "sent_at": message.ref.ts,
        "kind": message.kind,
        "text": message.text,
        "content_type": None if content is None or message.deleted else content.type,
        "reply_to": None if message.reply_to is None else message.reply_to.hex(),
        "edited": message.edited,
        "deleted": message.deleted,
        "sealed": message.sealed,
        "reactions": {emoji: len(who) for emoji, who in sorted(message.reactions.items()) if who},
        "share": _share_dict(message.share) if message.share and not message.deleted else None,
        "files": [] if message.deleted else files_of(content),
    }
    return dict(add_deprecated(record, "ts"))


def group_notice_to_dict(event: GroupEvent) -> dict[str, Any]:
    """A removal or ban as ``groups.history`` (``notices``) lists it among messages:
    ``kind`` "member.remove" / "member.ban", ``author`` who did it, ``account`` whom."""
    parsed = event.parsed
    assert isinstance(parsed, MemberRemove | MemberBan)
    record = {
        "event_id": event.event_id.hex(),
        "author": event.author_account.hex(),
        "sent_at": event.ts,
        "kind": event.kind,
        "account": parsed.account.hex(),
        "reason": parsed.reason,
        "until": parsed.until if isinstance(parsed, MemberBan) else None,
    }
    return dict(add_deprecated(record, "ts"))


def _share_dict(card: ShareCard) -> dict[str, Any]:
    return {
        "title": card.title,
        "url": card.url,
        "price": _price_dict(card.price),
        "note": card.note,
        "image": None if card.image is None else media_to_dict(card.image),
    }


def _price_dict(price: Price | None) -> dict[str, Any] | None:
    return None if price is None else {"amount": price.amount, "currency": price.currency}


def group_view_to_dict(view: GroupView) -> dict[str, Any]:
    """Poll tallies and group-buy states, in the group's order (their events' order)."""
    polls = [
        {
            "poll_id": tally.poll_id.hex(),
            "question": tally.poll.question,
            "options": list(tally.poll.options),
            "multi": tally.poll.multi,
            "deadline": tally.poll.deadline,
            "counts": list(tally.counts),
            "voters": tally.voters,
        }
        for tally in view.polls.values()
    ]
    buys = [
        {
            "buy_id": state.buy_id.hex(),
            "title": state.buy.title,
            "options": list(state.buy.options),
            "quota": state.buy.quota,
            "deadline": state.buy.deadline,
            "price": _price_dict(state.buy.price),
            "url": state.buy.url,
            "units": list(state.units),
            "total": state.total,
            "reached": state.reached,
            "participants": [
                {"account": account.hex(), "option": option, "quantity": quantity}
                for account, (option, quantity) in sorted(state.participants.items())
            ],
        }
        for state in view.buys.values()
    ]
    return {"polls": polls, "buys": buys}


def event_result(group_id: bytes, event_id: bytes) -> dict[str, Any]:
    return {"group_id": group_id.hex(), "event_id": event_id.hex()}
