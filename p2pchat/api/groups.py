"""The node's ``groups.*`` RPC methods (``protocol-spec/rpc.md`` §9.3, Groups).

A thin translation, like :mod:`p2pchat.api.methods`: hex in params and results, one handler
per method, every call through the node's public group API, so the CLI and any other
program see exactly what an embedding app sees. Two things are added on top:

* a *GROUP* param takes the group id (64 hex digits), or among the groups this node
  knows, a unique name (case-insensitive) or a unique id prefix (at least 4 hex digits),
  so people can type what they see in ``groups list``;
* content bodies (polls, share cards, group buys...) are validated here, before the node
  signs anything, so a bad argument is a 1004 ``invalid-argument`` naming the field,
  rather than the group refusing an event it could never accept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final

from p2pchat.api.files import FILE_IDS, refs_for
from p2pchat.api.group_shapes import (
    checked,
    event_result,
    group_info_to_dict,
    group_message_to_dict,
    group_notice_to_dict,
    group_to_dict,
    group_view_to_dict,
    parse_event_id,
    price_param,
    resolve_group,
)
from p2pchat.api.shapes import account_label, plain, resolve_contact
from p2pchat.errors import ConfigError, NotFoundError, PermissionDeniedError, WireError
from p2pchat.protocol.content import Content, MediaRef
from p2pchat.protocol.group_events import (
    ROLES,
    Delete,
    GroupBuy,
    GroupBuyJoin,
    LiveComment,
    Poll,
    Reaction,
    ShareCard,
    Vote,
)
from p2pchat.protocol.group_invite import INVITE_PREFIX, InviteToken
from p2pchat.protocol.group_state import Membership
from p2pchat.rpc import Bounds, NoParams, Registry
from p2pchat.vocabulary import add_deprecated

if TYPE_CHECKING:
    from p2pchat.node import Node

__all__ = [
    "register_group_methods",
    "resolve_group",
    "group_to_dict",
    "group_message_to_dict",
    "group_view_to_dict",
]

_MAX_MS: Final = (1 << 53) - 1
_GROUP = Bounds(max_len=128)
_ID = Bounds(max_len=64)
_ACCOUNT = Bounds(max_len=128)
_TEXT = Bounds(max_len=65_536)  # characters; the node checks bytes (MAX_TEXT_BYTES)
_ROLE_RANK: Final = {role: rank for rank, role in enumerate(ROLES)}

# -- params -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _GroupParams:
    group: Annotated[str, _GROUP]


@dataclass(frozen=True, slots=True)
class _CreateParams:
    name: Annotated[str, Bounds(max_len=64)]
    kind: Annotated[str, Bounds(max_len=16)] = "public"
    tags: Annotated[list[str] | None, Bounds(max_len=16)] = None
    about: Annotated[str | None, Bounds(max_len=1024)] = None
    join: Annotated[str | None, Bounds(max_len=16)] = None
    slow_seconds: Annotated[int, Bounds(min=0, max=86_400)] = 0


@dataclass(frozen=True, slots=True)
class _InviteParams:
    group: Annotated[str, _GROUP]
    role: Annotated[str, Bounds(max_len=16)] = "member"
    expires_in_ms: Annotated[int, Bounds(min=60_000, max=365 * 86_400_000)] = 7 * 86_400_000
    uses: Annotated[int, Bounds(min=1, max=10_000)] = 1
    account: Annotated[str | None, _ACCOUNT] = None


@dataclass(frozen=True, slots=True)
class _JoinParams:
    #: An invite link holds the invite's secret: keep it out of reprs and logs.
    invite: Annotated[str, Bounds(max_len=4096)] = field(repr=False)


@dataclass(frozen=True, slots=True)
class _PostParams:
    group: Annotated[str, _GROUP]
    text: Annotated[str | None, _TEXT] = None
    content_type: Annotated[str | None, Bounds(max_len=64)] = None
    body: Annotated[dict[str, Any] | None, Bounds(max_len=64)] = None
    reply_to: Annotated[str | None, _ID] = None
    files: FILE_IDS = None


@dataclass(frozen=True, slots=True)
class _ReactParams:
    group: Annotated[str, _GROUP]
    target: Annotated[str, _ID]
    emoji: Annotated[str, Bounds(max_len=32)]
    on: bool = True


@dataclass(frozen=True, slots=True)
class _EditParams:
    group: Annotated[str, _GROUP]
    target: Annotated[str, _ID]
    text: Annotated[str, _TEXT]


@dataclass(frozen=True, slots=True)
class _DeleteParams:
    group: Annotated[str, _GROUP]
    target: Annotated[str, _ID]
    reason: Annotated[str | None, Bounds(max_len=280)] = None


@dataclass(frozen=True, slots=True)
class _PollParams:
    group: Annotated[str, _GROUP]
    question: Annotated[str, Bounds(max_len=300)]
    options: Annotated[list[str], Bounds(max_len=16)]
    deadline: Annotated[int, Bounds(min=0, max=_MAX_MS)]
    multi: bool = False


@dataclass(frozen=True, slots=True)
class _VoteParams:
    group: Annotated[str, _GROUP]
    poll: Annotated[str, _ID]
    choices: Annotated[list[int], Bounds(max_len=16)]


@dataclass(frozen=True, slots=True)
class _ShareParams:
    group: Annotated[str, _GROUP]
    title: Annotated[str, Bounds(max_len=200)]
    url: Annotated[str, Bounds(max_len=2048)]
    price: Annotated[int | None, Bounds(min=0, max=_MAX_MS)] = None
    currency: Annotated[str | None, Bounds(max_len=3)] = None
    note: Annotated[str | None, Bounds(max_len=1000)] = None
    #: Id of an image added with files.add, shown on the card.
    image: Annotated[str | None, Bounds(max_len=64)] = None


@dataclass(frozen=True, slots=True)
class _BuyParams:
    group: Annotated[str, _GROUP]
    title: Annotated[str, Bounds(max_len=200)]
    options: Annotated[list[str], Bounds(max_len=16)]
    quota: Annotated[int, Bounds(min=1, max=1_000_000)]
    deadline: Annotated[int, Bounds(min=0, max=_MAX_MS)]
    price: Annotated[int | None, Bounds(min=0, max=_MAX_MS)] = None
    currency: Annotated[str | None, Bounds(max_len=3)] = None
    url: Annotated[str | None, Bounds(max_len=2048)] = None


@dataclass(frozen=True, slots=True)
class _BuyJoinParams:
    group: Annotated[str, _GROUP]
    buy: Annotated[str, _ID]
    option: Annotated[int, Bounds(min=0, max=15)]
    quantity: Annotated[int, Bounds(min=0, max=1000)]


@dataclass(frozen=True, slots=True)
class _LiveParams:
    group: Annotated[str, _GROUP]
    media_hash: Annotated[str, _ID]
    mime: Annotated[str, Bounds(max_len=127)]
    size: Annotated[int, Bounds(min=0, max=_MAX_MS)]
    offset_ms: Annotated[int, Bounds(min=0, max=_MAX_MS)]
    text: Annotated[str, Bounds(max_len=280)]
    url: Annotated[str | None, Bounds(max_len=2048)] = None


@dataclass(frozen=True, slots=True)
class _LiveCommentsParams:
    group: Annotated[str, _GROUP]
    media_hash: Annotated[str, _ID]
    start_ms: Annotated[int, Bounds(min=0, max=_MAX_MS)]
    end_ms: Annotated[int, Bounds(min=0, max=_MAX_MS)]


@dataclass(frozen=True, slots=True)
class _ModerateParams:
    group: Annotated[str, _GROUP]
    account: Annotated[str, _ACCOUNT]
    reason: Annotated[str | None, Bounds(max_len=280)] = None


@dataclass(frozen=True, slots=True)
class _BanParams:
    group: Annotated[str, _GROUP]
    account: Annotated[str, _ACCOUNT]
    reason: Annotated[str | None, Bounds(max_len=280)] = None
    until: Annotated[int | None, Bounds(min=0, max=_MAX_MS)] = None


@dataclass(frozen=True, slots=True)
class _RoleParams:
    group: Annotated[str, _GROUP]
    account: Annotated[str, _ACCOUNT]
    role: Annotated[str, Bounds(max_len=16)]


@dataclass(frozen=True, slots=True)
class _SearchParams:
    tag: Annotated[str, Bounds(max_len=32)]


@dataclass(frozen=True, slots=True)
class _HistoryParams:
    group: Annotated[str, _GROUP]
    before: Annotated[str | None, _ID] = None
    limit: Annotated[int, Bounds(min=1, max=500)] = 50
    notices: bool = False


# -- the section --------------------------------------------------------------------------


def register_group_methods(registry: Registry, node: Node) -> None:
    """``groups.*``: create, find, join and use interest groups (a :data:`SECTIONS` entry)."""
    me = node.account_key

    async def group_of(text: str) -> bytes:
        return resolve_group(text, await node.groups())

    async def account_of(text: str) -> bytes:
        return resolve_contact(text, await node.contacts())

    async def described(group_id: bytes) -> dict[str, Any]:
        state = node.group_state(group_id)  # NotFoundError unless we are in it
        info = next((g for g in await node.groups() if g.group_id == group_id), None)
        if info is None:  # the node knows the group but has not stored it (yet)
            raise NotFoundError("you are not in that group")
        return group_info_to_dict(info, state, me)

    def took_effect(done: bool, what: str) -> None:
        # The node signs a moderation event whatever our role; the group's rules then
        # ignore one we may not make. Say so, instead of returning a success that is not.
        if not done:
            raise PermissionDeniedError(
                f"the group ignored the {what}: your role does not allow it for that member"
            )

    def state_or_none(group_id: bytes) -> Membership | None:
        try:
            return node.group_state(group_id)
        except NotFoundError:
            return None

    async def groups_list(_: object) -> list[dict[str, Any]]:
        """Our groups (also those we left or were removed from), by name."""
        found = sorted(await node.groups(), key=lambda g: (g.name.casefold(), g.group_id))
        return [group_to_dict(g, state_or_none(g.group_id), me) for g in found]

    async def groups_info(p: _GroupParams) -> dict[str, Any]:
        """The descriptor, rules, our role, members by role, bans and the epoch, and the
        digest of the history we hold (equal on members that show the same history)."""
        group_id = await group_of(p.group)
        digest, events = node.group_history_digest(group_id)
        return {**await described(group_id), "history_hash": digest.hex(), "events": events}

    async def groups_members(p: _GroupParams) -> list[dict[str, Any]]:
        """Members with their roles (owners first) and, if they are contacts, names."""
        state = node.group_state(await group_of(p.group))
        contacts = {c.account: c for c in await node.contacts()}
        ordered = sorted(state.members.items(), key=lambda kv: (_ROLE_RANK[kv[1]], kv[0]))
        return [
            {
                "account": a.hex(),
                "role": role,
                "name": contacts[a].display_name if a in contacts else None,
                "label": account_label(a, contacts.get(a), claimed=node.claimed_name_of(a)),
                "me": a == me,
            }
            for a, role in ordered
        ]

    async def groups_create(p: _CreateParams) -> dict[str, Any]:
        """Create a public, private (end-to-end encrypted) or live group; we own it."""
        group_id = await node.create_group(
            p.name,
            kind=p.kind,
            tags=tuple(p.tags or ()),
            about=p.about,
            join=p.join,
            slow_seconds=p.slow_seconds,
        )
        return await described(group_id)

    async def groups_invite(p: _InviteParams) -> dict[str, Any]:
        """An invite link for ``uses`` joins until it expires (only for ``account``, if given)."""
        group_id = await group_of(p.group)
        if p.role not in ROLES or p.role == "owner":
            raise ConfigError(f"an invite gives one of: {', '.join(ROLES[1:])}")
        account = None if p.account is None else await account_of(p.account)
        link = await node.invite(
            group_id, role=p.role, expires_in_ms=p.expires_in_ms, uses=p.uses, account=account
        )
        return {"group_id": group_id.hex(), "link": link}

    async def groups_join(p: _JoinParams) -> dict[str, Any]:
        """Join with an invite link, or an open group by id (from ``groups.search``)."""
        text = p.invite.strip()
        if text.startswith(INVITE_PREFIX):
            try:  # a damaged link is a bad argument, not a peer breaking the protocol
                InviteToken.from_text(text)
            except WireError as exc:
                raise ConfigError(
                    f"not a valid invite link ({exc}); ask for the link again, copied whole"
                ) from None
        return await described(await node.join_group(text))

    async def groups_leave(p: _GroupParams) -> dict[str, Any]:
        """Leave a group (its history stays listed as ``left``)."""
        group_id = await group_of(p.group)
        await node.leave_group(group_id)
        return {"group_id": group_id.hex()}

    async def groups_post(p: _PostParams) -> dict[str, Any]:
        """Post, or reply to ``reply_to``: text, or any content type and body."""
        group_id = await group_of(p.group)
        if p.files:
            reply = None if p.reply_to is None else parse_event_id(p.reply_to, "reply_to")
            refs = refs_for(node, p.files)
            return event_result(
                group_id,
                await node.post(group_id, p.text or "", reply_to=reply, attachments=refs),
            )
        try:
            content = Content(
                type=p.content_type or "p2pchat/text", body=p.body or {}, text=p.text or ""
            )
        except ValueError as exc:
            raise ConfigError(f"invalid content: {exc}") from None
        checked(content, "content")
        reply_to = None if p.reply_to is None else parse_event_id(p.reply_to, "reply_to")
        event_id = await node.post(group_id, reply_to=reply_to, content=content)
        return event_result(group_id, event_id)

    async def groups_react(p: _ReactParams) -> dict[str, Any]:
        """Add (or with ``on`` false, take back) a reaction to a message."""
        group_id = await group_of(p.group)
        body = checked(
            Reaction(target=parse_event_id(p.target, "target"), emoji=p.emoji, on=p.on), "reaction"
        )
        return event_result(
            group_id, await node.react(group_id, body.target, body.emoji, on=body.on)
        )

    async def groups_edit(p: _EditParams) -> dict[str, Any]:
        """Replace the text of one of our own messages."""
        group_id = await group_of(p.group)
        checked(Content(type="p2pchat/text", body={}, text=p.text), "text")
        return event_result(
            group_id, await node.edit(group_id, parse_event_id(p.target, "target"), p.text)
        )

    async def groups_delete(p: _DeleteParams) -> dict[str, Any]:
        """Delete a message (our own, or anyone's as a moderator)."""
        group_id = await group_of(p.group)
        body = checked(Delete(target=parse_event_id(p.target, "target"), reason=p.reason), "delete")
        return event_result(group_id, await node.delete(group_id, body.target, reason=body.reason))

    async def groups_poll(p: _PollParams) -> dict[str, Any]:
        """Start a poll; votes after ``deadline`` are ignored."""
        group_id = await group_of(p.group)
        checked(
            Poll(question=p.question, options=tuple(p.options), multi=p.multi, deadline=p.deadline),
            "poll",
        )
        event_id = await node.create_poll(
            group_id, p.question, tuple(p.options), deadline=p.deadline, multi=p.multi
        )
        return event_result(group_id, event_id)

    async def groups_vote(p: _VoteParams) -> dict[str, Any]:
        """Vote (option indexes from 0; an empty list takes the vote back)."""
        group_id = await group_of(p.group)
        vote = checked(Vote(poll=parse_event_id(p.poll, "poll"), choices=tuple(p.choices)), "vote")
        return event_result(group_id, await node.vote(group_id, vote.poll, vote.choices))

    async def groups_share(p: _ShareParams) -> dict[str, Any]:
        """A share card: a link with a title, and a price for shopping groups."""
        group_id = await group_of(p.group)
        card = ShareCard(
            title=p.title, url=p.url, price=price_param(p.price, p.currency), note=p.note
        )
        checked(card, "share card")
        image = refs_for(node, [p.image])[0] if p.image else None
        event_id = await node.share(
            group_id, p.title, p.url, price=card.price, note=p.note, image=image
        )
        return event_result(group_id, event_id)

    async def groups_buy(p: _BuyParams) -> dict[str, Any]:
        """Start a group buy that happens if ``quota`` units are joined by ``deadline``."""
        group_id = await group_of(p.group)
        buy = GroupBuy(
            title=p.title,
            options=tuple(p.options),
            quota=p.quota,
            deadline=p.deadline,
            price=price_param(p.price, p.currency),
            url=p.url,
        )
        checked(buy, "group buy")
        event_id = await node.group_buy(
            group_id,
            buy.title,
            buy.options,
            quota=buy.quota,
            deadline=buy.deadline,
            price=buy.price,
            url=buy.url,
        )
        return event_result(group_id, event_id)

    async def groups_buy_join(p: _BuyJoinParams) -> dict[str, Any]:
        """Join a group buy with ``quantity`` units of one option (0 withdraws)."""
        group_id = await group_of(p.group)
        body = GroupBuyJoin(buy=parse_event_id(p.buy, "buy"), option=p.option, quantity=p.quantity)
        checked(body, "buy join")
        return event_result(group_id, await node.join_buy(group_id, body.buy, p.option, p.quantity))

    async def groups_live(p: _LiveParams) -> dict[str, Any]:
        """A watch-together comment at ``offset_ms`` of a media file (live groups)."""
        group_id = await group_of(p.group)
        media = MediaRef(
            hash=parse_event_id(p.media_hash, "media_hash"), mime=p.mime, size=p.size, url=p.url
        )
        checked(LiveComment(media=media, offset=p.offset_ms, text=p.text), "live comment")
        return event_result(group_id, await node.live_comment(group_id, media, p.offset_ms, p.text))

    async def groups_live_comments(p: _LiveCommentsParams) -> list[dict[str, Any]]:
        """Comments between ``start_ms`` and ``end_ms`` of the media, by offset."""
        group_id = await group_of(p.group)
        media_hash = parse_event_id(p.media_hash, "media_hash")
        found = node.live_comments(group_id, media_hash, p.start_ms, p.end_ms)
        return [
            dict(
                add_deprecated(
                    {
                        "event_id": c.event_id.hex(),
                        "author": c.account.hex(),
                        "sent_at": c.ts,
                        "offset": c.offset,
                        "text": c.text,
                        "color": c.color,
                    },
                    "ts",
                )
            )
            for c in found
        ]

    async def groups_live_fetch(p: _LiveCommentsParams) -> dict[str, Any]:
        """Fetch from members the comments of that range made before we joined (call
        before ``groups.live_comments`` when joining a watch party late)."""
        group_id = await group_of(p.group)
        media_hash = parse_event_id(p.media_hash, "media_hash")
        if p.end_ms <= p.start_ms:
            raise ConfigError("end_ms must be after start_ms")
        received = await node.fetch_live_comments(group_id, media_hash, p.start_ms, p.end_ms)
        return {"group_id": group_id.hex(), "received": received}

    async def groups_remove(p: _ModerateParams) -> dict[str, Any]:
        """Remove a member (they may come back with a new invite)."""
        group_id = await group_of(p.group)
        account = await account_of(p.account)
        event_id = await node.remove(group_id, account, reason=p.reason)
        took_effect(not node.group_state(group_id).is_member(account), "removal")
        return event_result(group_id, event_id)

    async def groups_ban(p: _BanParams) -> dict[str, Any]:
        """Ban an account (until ``until``, or for good)."""
        group_id = await group_of(p.group)
        account = await account_of(p.account)
        event_id = await node.ban(group_id, account, reason=p.reason, until=p.until)
        took_effect(account in node.group_state(group_id).banned, "ban")
        return event_result(group_id, event_id)

    async def groups_set_role(p: _RoleParams) -> dict[str, Any]:
        """Give a member another role (admin, moderator, member, viewer)."""
        group_id = await group_of(p.group)
        if p.role not in ROLES:
            raise ConfigError(f"unknown role {p.role!r}; one of: {', '.join(ROLES)}")
        account = await account_of(p.account)
        event_id = await node.set_role(group_id, account, p.role)
        took_effect(node.group_state(group_id).role_of(account) == p.role, "role change")
        return event_result(group_id, event_id)

    async def groups_search(p: _SearchParams) -> list[dict[str, Any]]:
        """Public and live groups announced under a tag (DHT rendezvous), by name."""
        result: list[dict[str, Any]] = plain(await node.search_groups(p.tag))
        return result

    async def groups_history(p: _HistoryParams) -> list[dict[str, Any]]:
        """Messages in the group's order, oldest first: the latest ``limit`` before ``before``."""
        group_id = await group_of(p.group)
        before = None if p.before is None else parse_event_id(p.before, "before")
        if before is not None and node.group_message(group_id, before) is None:
            raise NotFoundError("no such message in that group")
        messages = node.group_history(group_id, limit=p.limit, before=before)
        shown = [group_message_to_dict(m) for m in messages]
        if not p.notices:
            return shown

        # Removals and bans in the same window of the group order, among the messages.
        # (Positions looked up one by one: a page never costs O(history).)
        def position_of(event_id: bytes) -> int:
            found = node.group_position(group_id, event_id)
            return -1 if found is None else found

        placed = [(position_of(m.ref.event_id), shown[i]) for i, m in enumerate(messages)]
        low = placed[0][0] if len(messages) == p.limit else -1
        high = position_of(before) if before is not None else 1 << 62
        for position, event in node.group_notices(group_id):
            if low < position < high:
                placed.append((position, group_notice_to_dict(event)))
        return [m for _, m in sorted(placed, key=lambda pm: pm[0])]

    async def groups_view(p: _GroupParams) -> dict[str, Any]:
        """Poll tallies and group-buy states."""
        group_id = await group_of(p.group)
        return {"group_id": group_id.hex(), **group_view_to_dict(node.group_tallies(group_id))}

    async def groups_sync(p: _GroupParams) -> dict[str, Any]:
        """Catch up with the connected members now; returns how many events came."""
        group_id = await group_of(p.group)
        return {"group_id": group_id.hex(), "received": await node.sync_group(group_id)}

    registry.add("groups.list", groups_list, scope="read", params=NoParams)
    registry.add("groups.info", groups_info, scope="read", params=_GroupParams)
    registry.add("groups.members", groups_members, scope="read", params=_GroupParams)
    registry.add("groups.create", groups_create, scope="send", params=_CreateParams)
    registry.add("groups.invite", groups_invite, scope="admin", params=_InviteParams)
    registry.add("groups.join", groups_join, scope="send", params=_JoinParams)
    registry.add("groups.leave", groups_leave, scope="send", params=_GroupParams)
    registry.add("groups.post", groups_post, scope="send", params=_PostParams)
    registry.add("groups.react", groups_react, scope="send", params=_ReactParams)
    registry.add("groups.edit", groups_edit, scope="send", params=_EditParams)
    registry.add("groups.delete", groups_delete, scope="send", params=_DeleteParams)
    registry.add("groups.poll", groups_poll, scope="send", params=_PollParams)
    registry.add("groups.vote", groups_vote, scope="send", params=_VoteParams)
    registry.add("groups.share", groups_share, scope="send", params=_ShareParams)
    registry.add("groups.buy", groups_buy, scope="send", params=_BuyParams)
    registry.add("groups.buy_join", groups_buy_join, scope="send", params=_BuyJoinParams)
    registry.add("groups.live", groups_live, scope="send", params=_LiveParams)
    registry.add(
        "groups.live_comments", groups_live_comments, scope="read", params=_LiveCommentsParams
    )
    registry.add("groups.live_fetch", groups_live_fetch, scope="send", params=_LiveCommentsParams)
    registry.add("groups.remove", groups_remove, scope="admin", params=_ModerateParams)
    registry.add("groups.ban", groups_ban, scope="admin", params=_BanParams)
    registry.add("groups.set_role", groups_set_role, scope="admin", params=_RoleParams)
    registry.add("groups.search", groups_search, scope="read", params=_SearchParams)
    registry.add(
        "groups.history",
        groups_history,
        scope="read",
        params=_HistoryParams,
        pager=lambda p: (
            "last",
            lambda first, kept: {"before": first["event_id"], "limit": p.limit - kept},
        ),
    )
    registry.add("groups.view", groups_view, scope="read", params=_GroupParams)
    registry.add("groups.sync", groups_sync, scope="send", params=_GroupParams)
