"""The node's RPC methods (``protocol-spec/rpc.md`` §9.3): node, contacts and DMs.

:func:`build_registry` turns a :class:`~p2pchat.node.Node` into a
:class:`~p2pchat.rpc.Registry`: one small handler per method, each a thin translation
between msgpack-friendly maps and the node's typed API. Nothing here holds state or
bypasses the node: the CLI and any other app see exactly what an embedding app sees.

Results and contact names follow the conventions of :mod:`p2pchat.api.shapes`; the
server around a running node is :mod:`p2pchat.api.serve`.

Extension point: a feature adds its methods with a ``register(registry, node)`` function
listed in :data:`SECTIONS` (groups will add ``register_group_methods`` there), or passes
it to :func:`build_registry` through ``extra``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from p2pchat import __version__
from p2pchat.api.devices import register_device_methods
from p2pchat.api.files import FILE_IDS, refs_for, register_file_methods
from p2pchat.api.groups import register_group_methods
from p2pchat.api.profiles import register_profile_methods
from p2pchat.api.search import register_search_methods
from p2pchat.api.shapes import (
    contact_to_dict,
    conversation_to_dict,
    delivery_to_dict,
    folded_to_dict,
    message_to_dict,
    plain,
    resolve_contact,
)
from p2pchat.dm.service import MAX_SEND_BATCH
from p2pchat.errors import ConfigError
from p2pchat.protocol.content import Content
from p2pchat.rpc import Bounds, NoParams, Registry
from p2pchat.storage.records import Contact, ContactState
from p2pchat.vocabulary import add_deprecated
from p2pchat_crypto.identity import safety_number

if TYPE_CHECKING:
    from p2pchat.node import Node

__all__ = [
    "SECTIONS",
    "build_registry",
    "node_info",
    "Section",
]

#: The largest id a JSON or JavaScript client can hold exactly (rpc.md §3).
_MAX_ID: Final = (1 << 53) - 1
_CONTACT = Bounds(max_len=128)

Section = Callable[[Registry, "Node"], None]


# -- params -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ContactParams:
    contact: Annotated[str, _CONTACT]


@dataclass(frozen=True, slots=True)
class _RenameContactParams:
    contact: Annotated[str, _CONTACT]
    name: Annotated[str, Bounds(max_len=64)]


@dataclass(frozen=True, slots=True)
class _VerifyContactParams:
    contact: Annotated[str, _CONTACT]
    verified: bool = True


@dataclass(frozen=True, slots=True)
class _AddContactParams:
    address: Annotated[str, Bounds(max_len=128)]
    name: Annotated[str | None, Bounds(max_len=64)] = None


@dataclass(frozen=True, slots=True)
class _ListContactsParams:
    state: Annotated[str | None, Bounds(max_len=32)] = None


@dataclass(frozen=True, slots=True)
class _ConnectParams:
    address: Annotated[str, Bounds(max_len=512)]


@dataclass(frozen=True, slots=True)
class _SendParams:
    to: Annotated[str, _CONTACT]
    # Characters here; the node checks the real limit, in bytes (MAX_TEXT_BYTES).
    text: Annotated[str | None, Bounds(max_len=65_536)] = None
    content_type: Annotated[str | None, Bounds(max_len=64)] = None
    body: Annotated[dict[str, Any] | None, Bounds(max_len=64)] = None
    reply_to: Annotated[str | None, Bounds(max_len=128)] = None
    #: Ids of files added with files.add (or received) to attach.
    files: FILE_IDS = None


@dataclass(frozen=True, slots=True)
class _SendBatchParams:
    to: Annotated[str, _CONTACT]
    texts: Annotated[list[str], Bounds(max_len=MAX_SEND_BATCH)]
    reply_to: Annotated[str | None, Bounds(max_len=128)] = None


@dataclass(frozen=True, slots=True)
class _DmTargetParams:
    to: Annotated[str, _CONTACT]
    target: Annotated[str, Bounds(max_len=64)]


@dataclass(frozen=True, slots=True)
class _DmReactParams:
    to: Annotated[str, _CONTACT]
    target: Annotated[str, Bounds(max_len=64)]
    emoji: Annotated[str, Bounds(max_len=32)]
    on: bool = True


@dataclass(frozen=True, slots=True)
class _DmEditParams:
    to: Annotated[str, _CONTACT]
    target: Annotated[str, Bounds(max_len=64)]
    text: Annotated[str, Bounds(max_len=65_536)]


@dataclass(frozen=True, slots=True)
class _HistoryParams:
    conversation: Annotated[str, Bounds(max_len=256)]
    before_seq: Annotated[int | None, Bounds(min=0, max=_MAX_ID)] = None
    after_seq: Annotated[int | None, Bounds(min=0, max=_MAX_ID)] = None
    limit: Annotated[int, Bounds(min=1, max=500)] = 50


def _dm_history_pager(
    p: _HistoryParams,
) -> tuple[Literal["first", "last"], Callable[[Any, int], dict[str, Any]]]:
    """Catching up (``after_seq`` alone) keeps the oldest; otherwise keep the newest."""
    if p.after_seq is not None and p.before_seq is None:
        return "first", lambda last, kept: {"after_seq": last["seq"], "limit": p.limit - kept}
    return "last", lambda first, kept: {"before_seq": first["seq"], "limit": p.limit - kept}


@dataclass(frozen=True, slots=True)
class _ConversationParams:
    conversation: Annotated[str, Bounds(max_len=256)]


@dataclass(frozen=True, slots=True)
class _MessageParams:
    message_id: Annotated[str, Bounds(max_len=64)]


# -- results ------------------------------------------------------------------------------


def node_info(node: Node) -> dict[str, Any]:
    """The public description sent in the ``rpc.hello`` reply (no secrets, no network)."""
    record = {
        "version": __version__,
        "account": node.account_key.hex(),
        "fingerprint": node.fingerprint,
        "device": node.device_key.hex(),
        "peer_id": node.peer_id,
        "display_name": node.display_name,
    }
    return dict(add_deprecated(record, "account_key", "device_key"))


# -- argument parsing ---------------------------------------------------------------------


def _parse_state(text: str | None) -> ContactState | None:
    if text is None:
        return None
    try:
        return ContactState(text)
    except ValueError:
        known = ", ".join(s.value for s in ContactState)
        raise ConfigError(f"unknown contact state {text!r}; one of: {known}") from None


def _parse_id(text: str | None, what: str) -> bytes | None:
    if text is None:
        return None
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if not value:
        raise ConfigError(f"{what} must be hex")
    return value


# -- sections -----------------------------------------------------------------------------


def register_node_methods(registry: Registry, node: Node) -> None:
    """``node.*``, ``peers.*`` and ``mail.*``: who the node is and how it is connected."""

    async def info(_: object) -> dict[str, Any]:
        """The node's identity (public keys, fingerprint, peer id), listen addresses, version."""
        return {**node_info(node), "listen_addrs": node.listen_addrs}

    async def status(_: object) -> dict[str, Any]:
        """A short health summary: identity, uptime, peers, unread messages, requests."""
        stats = await node.statistics()
        conversations = await node.conversations()
        return {
            **node_info(node),
            "listen_addrs": node.listen_addrs,
            "uptime_ms": stats["uptime_ms"],
            "connected_peers": stats["connected_peers"],
            "nearby_peers": stats["nearby_peers"],
            "conversations": len(conversations),
            "unread": sum(c.unread for c in conversations),
            "contact_requests": len(await node.contact_requests()),
            "records_published_at": stats["records_published_at"],
            "rejected": stats["groups"]["rejected"],
            "unreachable": stats["network"]["unreachable"],
            "reachability": stats["network"].get("reachability", "unknown"),
            "relays": stats["network"].get("relays", []),
            "penalties": stats["network"].get("penalties", {}),
            "graylisted": stats["network"].get("graylisted", 0),
        }

    async def statistics(_: object) -> dict[str, Any]:
        """Every counter the node keeps (delivery, mailbox, events, store)."""
        result: dict[str, Any] = plain(await node.statistics())
        return result

    async def peers_list(_: object) -> dict[str, Any]:
        """Connected peers and peers seen on the local network (mDNS)."""
        result: dict[str, Any] = plain(await node.peers())
        return result

    async def peers_connect(p: _ConnectParams) -> dict[str, Any]:
        """Dial a peer by full multiaddr ending in /p2p/<peer id>."""
        return {"peer_id": await node.connect(p.address)}

    async def mail_collect(_: object) -> dict[str, Any]:
        """Fetch our mail from the mailboxes we use now; returns how many items came."""
        return {"collected": await node.collect_mail()}

    registry.add("node.info", info, scope="read", params=NoParams)
    registry.add("node.status", status, scope="read", params=NoParams)
    registry.add("node.statistics", statistics, scope="read", params=NoParams)
    registry.add("peers.list", peers_list, scope="read", params=NoParams)
    registry.add("peers.connect", peers_connect, scope="admin", params=_ConnectParams)
    registry.add("mail.collect", mail_collect, scope="send", params=NoParams)


def register_contact_methods(registry: Registry, node: Node) -> None:
    """``contacts.*``: list, add, and move contacts between states."""

    async def account_of(text: str) -> bytes:
        return resolve_contact(text, await node.contacts())

    async def contacts_list(p: _ListContactsParams) -> list[dict[str, Any]]:
        """Contacts (optionally only those in one state), by display name."""
        found = await node.contacts(state=_parse_state(p.state))
        return [contact_to_dict(c) for c in sorted(found, key=_contact_order)]

    async def contacts_requests(_: object) -> list[dict[str, Any]]:
        """Strangers who wrote to us and wait for our consent."""
        return [
            contact_to_dict(c) for c in sorted(await node.contact_requests(), key=_contact_order)
        ]

    async def contacts_add(p: _AddContactParams) -> dict[str, Any]:
        """Add (and consent to) a contact by account key or peer id, optionally naming it."""
        return contact_to_dict(await node.add_contact(p.address, name=p.name))

    def change(
        action: Callable[[bytes], Awaitable[Contact]], doc: str
    ) -> Callable[[_ContactParams], Awaitable[dict[str, Any]]]:
        async def handler(p: _ContactParams) -> dict[str, Any]:
            return contact_to_dict(await action(await account_of(p.contact)))

        handler.__doc__ = doc
        return handler

    async def contacts_rename(p: _RenameContactParams) -> dict[str, Any]:
        """Give a contact another name (refused if another contact has it)."""
        return contact_to_dict(await node.rename_contact(await account_of(p.contact), p.name))

    async def contacts_verify(p: _VerifyContactParams) -> dict[str, Any]:
        """Record that the safety numbers matched (``verified`` false takes it back)."""
        account = await account_of(p.contact)
        return contact_to_dict(await node.verify_contact(account, verified=p.verified))

    async def contacts_safety_number(p: _ContactParams) -> dict[str, Any]:
        """The number both people compare (out loud, in person) before ``contacts.verify``."""
        account = await account_of(p.contact)
        return {
            "account": account.hex(),
            "safety_number": safety_number(node.account_key, account),
        }

    registry.add("contacts.list", contacts_list, scope="read", params=_ListContactsParams)
    registry.add("contacts.rename", contacts_rename, scope="admin", params=_RenameContactParams)
    registry.add("contacts.verify", contacts_verify, scope="admin", params=_VerifyContactParams)
    registry.add(
        "contacts.safety_number", contacts_safety_number, scope="read", params=_ContactParams
    )
    registry.add("contacts.requests", contacts_requests, scope="read", params=NoParams)
    registry.add("contacts.add", contacts_add, scope="admin", params=_AddContactParams)
    actions = {
        "accept": (node.accept_contact, "Accept a contact request (they may write to us)."),
        "decline": (node.decline_contact, "Decline a contact request."),
        "block": (node.block_contact, "Block an account: its messages are dropped unread."),
        "unblock": (node.unblock_contact, "Unblock an account (it becomes an accepted contact)."),
        "remove": (node.remove_contact, "Forget a contact (the conversation stays)."),
    }
    for verb, (action, doc) in actions.items():
        registry.add(f"contacts.{verb}", change(action, doc), scope="admin", params=_ContactParams)


def register_dm_methods(registry: Registry, node: Node) -> None:
    """``dm.*``: send, read and list direct messages."""

    async def conversation_id_of(text: str) -> str:
        if text.startswith("dm:"):
            return text
        return "dm:" + resolve_contact(text, await node.contacts()).hex()

    async def dm_send(p: _SendParams) -> dict[str, Any]:
        """Queue a direct message; delivery continues in the background (dm.delivery events)."""
        account = resolve_contact(p.to, await node.contacts())
        if p.files:
            if p.content_type is not None or p.body is not None:
                raise ConfigError("give either files or a content type and body, not both")
            sent = await node.send_dm(
                account,
                p.text or "",
                attachments=refs_for(node, p.files),
                reply_to=_parse_id(p.reply_to, "reply_to"),
            )
            return message_to_dict(sent)
        if p.content_type is None and p.body is None:
            content = Content(type="p2pchat/text", body={}, text=p.text or "")
        else:
            try:
                content = Content(
                    type=p.content_type or "p2pchat/text", body=p.body or {}, text=p.text or ""
                )
            except ValueError as exc:
                raise ConfigError(f"invalid content: {exc}") from None
        sent = await node.send_dm(
            account, content=content, reply_to=_parse_id(p.reply_to, "reply_to")
        )
        return message_to_dict(sent)

    async def dm_send_batch(p: _SendBatchParams) -> list[dict[str, Any]]:
        """Queue several text messages to one contact, in order, in one transaction (all
        or none): one fsync for all, written and acknowledged together."""
        account = resolve_contact(p.to, await node.contacts())
        if not p.texts:
            raise ConfigError("texts is empty: give at least one message")
        try:
            contents = [Content(type="p2pchat/text", body={}, text=t) for t in p.texts]
        except ValueError as exc:
            raise ConfigError(f"invalid text: {exc}") from None
        sent = await node.send_dms(account, contents, reply_to=_parse_id(p.reply_to, "reply_to"))
        return [message_to_dict(m) for m in sent]

    async def dm_history(p: _HistoryParams) -> list[dict[str, Any]]:
        """Messages of a conversation, oldest first; the latest ``limit`` if no cursor is given."""
        before = p.before_seq
        if before is None and p.after_seq is None:
            before = _MAX_ID  # most recent page, still oldest first
        messages = await node.folded_history(
            await conversation_id_of(p.conversation),
            before_seq=before,
            after_seq=p.after_seq,
            limit=p.limit,
        )
        return [
            folded_to_dict(f.message, f.changes, node.waiting_reason(f.message.message_id))
            for f in messages
        ]

    def target_of(text: str) -> bytes:
        target = _parse_id(text, "target")
        assert target is not None
        return target

    async def dm_react(p: _DmReactParams) -> dict[str, Any]:
        """React to a message of the conversation (``on`` false takes the reaction back)."""
        account = resolve_contact(p.to, await node.contacts())
        return message_to_dict(await node.react_dm(account, target_of(p.target), p.emoji, on=p.on))

    async def dm_edit(p: _DmEditParams) -> dict[str, Any]:
        """Replace the text of one of our own messages."""
        account = resolve_contact(p.to, await node.contacts())
        return message_to_dict(await node.edit_dm(account, target_of(p.target), p.text))

    async def dm_delete(p: _DmTargetParams) -> dict[str, Any]:
        """Delete one of our own messages (receivers stop showing its text and files)."""
        account = resolve_contact(p.to, await node.contacts())
        return message_to_dict(await node.delete_dm(account, target_of(p.target)))

    async def dm_cancel(p: _MessageParams) -> dict[str, Any]:
        """Cancel a queued message (one never sent): it fails with the reason ``cancelled``."""
        message_id = _parse_id(p.message_id, "message_id")
        assert message_id is not None
        return message_to_dict(await node.cancel_dm(message_id))

    async def dm_deliveries(p: _MessageParams) -> dict[str, Any]:
        """Where one of our messages stands on each device it went to (fan-out)."""
        message_id = _parse_id(p.message_id, "message_id")
        assert message_id is not None
        deliveries = await node.dm_deliveries(message_id)
        message = await node.message(message_id)
        own = {d.device for d in node.devices()}
        return {
            "message_id": message_id.hex(),
            "state": message.state.value,
            "devices": [delivery_to_dict(d, own=d.device in own) for d in deliveries],
        }

    async def dm_conversations(_: object) -> list[dict[str, Any]]:
        """Conversations, most recent activity first, with unread counts and contact names."""
        contacts = {c.account: c for c in await node.contacts()}
        found = sorted(await node.conversations(), key=lambda c: -c.last_activity)
        return [
            conversation_to_dict(c, contacts.get(c.peer_account) if c.peer_account else None)
            for c in found
        ]

    async def dm_mark_read(p: _ConversationParams) -> dict[str, Any]:
        """Mark every message of a conversation as read."""
        conversation_id = await conversation_id_of(p.conversation)
        await node.history(conversation_id, limit=1)  # NotFoundError for an unknown one
        await node.mark_read(conversation_id)
        return {"conversation_id": conversation_id}

    registry.add("dm.send", dm_send, scope="send", params=_SendParams)
    registry.add("dm.send_batch", dm_send_batch, scope="send", params=_SendBatchParams)
    registry.add(
        "dm.history", dm_history, scope="read", params=_HistoryParams, pager=_dm_history_pager
    )
    registry.add("dm.cancel", dm_cancel, scope="send", params=_MessageParams)
    registry.add("dm.deliveries", dm_deliveries, scope="read", params=_MessageParams)
    registry.add("dm.react", dm_react, scope="send", params=_DmReactParams)
    registry.add("dm.edit", dm_edit, scope="send", params=_DmEditParams)
    registry.add("dm.delete", dm_delete, scope="send", params=_DmTargetParams)
    registry.add("dm.conversations", dm_conversations, scope="read", params=NoParams)
    registry.add("dm.mark_read", dm_mark_read, scope="send", params=_ConversationParams)


def _contact_order(contact: Contact) -> tuple[str, bytes]:
    return (contact.display_name.casefold(), contact.account)


#: Every section of the node's API, in registration order. Add new features here.
SECTIONS: tuple[Section, ...] = (
    register_node_methods,
    register_contact_methods,
    register_dm_methods,
    register_group_methods,
    register_device_methods,
    register_file_methods,
    register_search_methods,
    register_profile_methods,
)


def build_registry(node: Node, *, extra: Iterable[Section] = ()) -> Registry:
    """The node's methods (:data:`SECTIONS`, then ``extra``) in a new registry."""
    registry = Registry()
    for section in (*SECTIONS, *extra):
        section(registry, node)
    return registry
