"""The node's RPC methods (``protocol-spec/rpc.md`` §9.3) and the server that hosts them.

:func:`build_registry` turns a :class:`~p2pchat.node.Node` into a
:class:`~p2pchat.rpc.Registry`: one small handler per method, each a thin translation
between msgpack-friendly maps and the node's typed API. Nothing here holds state or
bypasses the node: the CLI and any other app see exactly what an embedding app sees.

Conventions, so every language can use the API without bytes in params:

* keys and ids in params and results are lower-case hex strings (an account key is 64
  hex digits, a message id 32); times are ints of milliseconds since the Unix epoch;
* a *contact* param takes an account key in hex or a contact's display name, if exactly
  one contact has it (case-insensitive), so people can type names;
* lists come back oldest or alphabetically first, and never contain raw ``bytes``.

Extension point: a feature adds its methods with a ``register(registry, node)`` function
listed in :data:`SECTIONS` (groups will add ``register_group_methods`` there), or passes
it to :func:`build_registry` through ``extra``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import trio

from p2pchat import __version__
from p2pchat.errors import ConfigError, NotFoundError, P2PChatError
from p2pchat.events import EventStream, event_to_dict
from p2pchat.node_rpc_groups import register_group_methods
from p2pchat.protocol.content import Content
from p2pchat.rpc import Bounds, NoParams, Registry, RpcServer, ServerConfig, ensure_admin_token
from p2pchat.rpc import open_rpc_server as _open_rpc_server
from p2pchat.storage.records import Contact, ContactState, Conversation, Message
from p2pchat_crypto.identity import fingerprint_of, safety_number
from p2pchat_crypto.sealed import Rng

if TYPE_CHECKING:
    from p2pchat.node import Node

__all__ = [
    "SECTIONS",
    "build_registry",
    "node_info",
    "open_node_rpc",
    "forward_events",
    "resolve_contact",
    "plain",
    "contact_to_dict",
    "message_to_dict",
    "conversation_to_dict",
]

#: The largest id a JSON or JavaScript client can hold exactly (rpc.md §3).
_MAX_ID: Final = (1 << 53) - 1
_ACCOUNT_HEX: Final = 64
_CONTACT = Bounds(max_len=128)
_CONTENT_MAX: Final = 64 * 1024

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
    text: Annotated[str | None, Bounds(max_len=16_384)] = None
    content_type: Annotated[str | None, Bounds(max_len=64)] = None
    body: Annotated[dict[str, Any] | None, Bounds(max_len=64)] = None
    reply_to: Annotated[str | None, Bounds(max_len=128)] = None


@dataclass(frozen=True, slots=True)
class _HistoryParams:
    conversation: Annotated[str, Bounds(max_len=256)]
    before_seq: Annotated[int | None, Bounds(min=0, max=_MAX_ID)] = None
    after_seq: Annotated[int | None, Bounds(min=0, max=_MAX_ID)] = None
    limit: Annotated[int, Bounds(min=1, max=500)] = 50


@dataclass(frozen=True, slots=True)
class _ConversationParams:
    conversation: Annotated[str, Bounds(max_len=256)]


# -- results ------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """``value`` with bytes as hex and tuples as lists, recursively (msgpack and JSON safe)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def contact_to_dict(contact: Contact) -> dict[str, Any]:
    return {
        "account": contact.account.hex(),
        "fingerprint": fingerprint_of(contact.account),
        "name": contact.display_name,
        "state": contact.state.value,
        "verified": contact.verified,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    """A stored message with its content decoded; an undecodable body keeps only its type."""
    try:
        content: Content | None = Content.from_bytes(message.body, max_size=_CONTENT_MAX)
    except (P2PChatError, ValueError):
        content = None  # stored by a newer version or damaged: still list the message
    return {
        "conversation_id": message.conversation_id,
        "message_id": message.message_id.hex(),
        "seq": message.seq,
        "direction": message.direction.value,
        "state": message.state.value,
        "failure_reason": message.failure_reason,
        "sender": message.sender_account.hex(),
        "sender_device": message.sender_device.hex(),
        "content_type": message.content_type,
        "text": content.text if content is not None else "",
        "body": plain(content.body) if content is not None else {},
        "sent_at": message.sent_at,
        "received_at": message.received_at,
    }


def conversation_to_dict(conversation: Conversation, name: str | None) -> dict[str, Any]:
    peer = conversation.peer_account
    return {
        "conversation_id": conversation.conversation_id,
        "kind": conversation.kind.value,
        "peer": peer.hex() if peer is not None else None,
        "name": name,
        "last_activity": conversation.last_activity,
        "unread": conversation.unread,
    }


def node_info(node: Node) -> dict[str, Any]:
    """The public description sent in the ``rpc.hello`` reply (no secrets, no network)."""
    return {
        "version": __version__,
        "account_key": node.account_key.hex(),
        "fingerprint": node.fingerprint,
        "device_key": node.device_key.hex(),
        "peer_id": node.peer_id,
    }


# -- argument parsing ---------------------------------------------------------------------


def _hex_account(text: str) -> bytes | None:
    cleaned = text.strip().replace(" ", "").lower()
    if len(cleaned) != _ACCOUNT_HEX:
        return None
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        return None


def resolve_contact(text: str, contacts: Iterable[Contact]) -> bytes:
    """The account a person means by ``text``: 64 hex digits, or a unique display name.

    Hex wins even if someone is named like a key: keys are what scripts pass.
    """
    account = _hex_account(text)
    if account is not None:
        return account
    wanted = text.strip().casefold()
    matches = [c for c in contacts if c.display_name.casefold() == wanted]
    if len(matches) == 1:
        return matches[0].account
    if not matches:
        raise NotFoundError(
            f"no contact named {text!r}; give the account key (64 hex digits) "
            "or see `p2pchat contacts list`"
        )
    raise ConfigError(
        f"{len(matches)} contacts are named {text!r}; give the account key (64 hex digits)"
    )


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
        """Give a contact another display name."""
        return contact_to_dict(await node.update_contact(await account_of(p.contact), name=p.name))

    async def contacts_verify(p: _VerifyContactParams) -> dict[str, Any]:
        """Mark a contact verified (safety numbers compared out of band), or not."""
        account = await account_of(p.contact)
        return contact_to_dict(await node.update_contact(account, verified=p.verified))

    async def contacts_remove(p: _ContactParams) -> dict[str, Any]:
        """Forget a contact; its conversation stays."""
        account = await account_of(p.contact)
        await node.remove_contact(account)
        return {"account": account.hex()}

    async def contacts_safety(p: _ContactParams) -> dict[str, Any]:
        """The safety number both sides compare, and both fingerprints."""
        account = await account_of(p.contact)
        return {
            "account": account.hex(),
            "safety_number": safety_number(node.account_key, account),
            "mine": node.fingerprint,
            "theirs": fingerprint_of(account),
        }

    registry.add("contacts.list", contacts_list, scope="read", params=_ListContactsParams)
    registry.add("contacts.requests", contacts_requests, scope="read", params=NoParams)
    registry.add("contacts.add", contacts_add, scope="admin", params=_AddContactParams)
    registry.add("contacts.rename", contacts_rename, scope="admin", params=_RenameContactParams)
    registry.add("contacts.verify", contacts_verify, scope="admin", params=_VerifyContactParams)
    registry.add("contacts.remove", contacts_remove, scope="admin", params=_ContactParams)
    registry.add("contacts.safety", contacts_safety, scope="read", params=_ContactParams)
    actions = {
        "accept": (node.accept_contact, "Accept a contact request (they may write to us)."),
        "decline": (node.decline_contact, "Decline a contact request."),
        "block": (node.block_contact, "Block an account: its messages are dropped unread."),
        "unblock": (node.unblock_contact, "Unblock an account (it becomes an accepted contact)."),
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
        if p.content_type is None and p.body is None:
            if p.text is None:
                raise ConfigError("dm.send needs text, or content_type and body")
            content = Content(type="p2pchat/text", body={}, text=p.text)
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

    async def dm_history(p: _HistoryParams) -> list[dict[str, Any]]:
        """Messages of a conversation, oldest first; the latest ``limit`` if no cursor is given."""
        before = p.before_seq
        if before is None and p.after_seq is None:
            before = _MAX_ID  # most recent page, still oldest first
        messages = await node.history(
            await conversation_id_of(p.conversation),
            before_seq=before,
            after_seq=p.after_seq,
            limit=p.limit,
        )
        return [message_to_dict(m) for m in messages]

    async def dm_conversations(_: object) -> list[dict[str, Any]]:
        """Conversations, most recent activity first, with unread counts and contact names."""
        names = {c.account: c.display_name for c in await node.contacts()}
        found = sorted(await node.conversations(), key=lambda c: -c.last_activity)
        return [
            conversation_to_dict(c, names.get(c.peer_account) if c.peer_account else None)
            for c in found
        ]

    async def dm_mark_read(p: _ConversationParams) -> dict[str, Any]:
        """Mark every message of a conversation as read."""
        conversation_id = await conversation_id_of(p.conversation)
        await node.history(conversation_id, limit=1)  # NotFoundError for an unknown one
        await node.mark_read(conversation_id)
        return {"conversation_id": conversation_id}

    registry.add("dm.send", dm_send, scope="send", params=_SendParams)
    registry.add("dm.history", dm_history, scope="read", params=_HistoryParams)
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
)


def build_registry(node: Node, *, extra: Iterable[Section] = ()) -> Registry:
    """The node's methods (:data:`SECTIONS`, then ``extra``) in a new registry."""
    registry = Registry()
    for section in (*SECTIONS, *extra):
        section(registry, node)
    return registry


# -- hosting ------------------------------------------------------------------------------


@asynccontextmanager
async def open_node_rpc(
    node: Node,
    *,
    home: Path,
    rng: Rng,
    config: ServerConfig | None = None,
    extra: Iterable[Section] = (),
) -> AsyncIterator[RpcServer]:
    """Serve ``node``'s API on ``<home>/rpc.sock`` (and TCP if configured) for the block.

    Creates the admin token on first use. Events are not forwarded here: the node runs
    :func:`forward_events` in its own nursery so it stops with the node's other work.
    """
    ensure_admin_token(home, rng=rng)
    async with _open_rpc_server(
        home=home,
        registry=build_registry(node, extra=extra),
        node_info=node_info(node),
        rng=rng,
        config=config,
    ) as server:
        yield server


async def forward_events(
    events: EventStream,
    server: RpcServer,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Publish every node event on the RPC server until the node closes its event bus."""
    async with events:
        task_status.started()
        async for event in events:
            server.publish(event_to_dict(event))
