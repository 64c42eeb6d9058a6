"""``messages.search``: full-text search over our DMs and our groups' messages.

The store is sealed at rest (``storage/_at_rest.py``): message bodies are encrypted under
the keystore's local key, so a copied home reveals no text. A full-text index (SQLite
FTS5) would be a second, *unsealed* copy of every word, which is exactly what sealing
prevents; so there is none. Search reads what the node can read: DM bodies opened from
the store page by page, and the groups' messages page by page (private groups' messages
once decrypted). Every word of the query must occur in a message's text (case
and accents as typed are folded with ``str.casefold``). The cost is linear in the
history; it is bounded by the ``limit`` of results and by the number of messages read,
``scanned`` in the result says how many. What cannot be searched: messages whose body
is undecodable, sealed group messages we have no key for, and media (only captions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final

from p2pchat.errors import ConfigError, P2PChatError
from p2pchat.protocol.content import Content, DeleteBody, EditBody
from p2pchat.protocol.dm_amend import amendment_of
from p2pchat.rpc import Bounds, Registry
from p2pchat.storage.records import GroupStatus

from .shapes import account_label

if TYPE_CHECKING:
    from p2pchat.node import Node

__all__ = ["register_search_methods", "matches"]

#: Messages read per store page while scanning a conversation.
_PAGE: Final = 500


@dataclass(frozen=True, slots=True)
class _SearchParams:
    query: Annotated[str, Bounds(max_len=200)]
    limit: Annotated[int, Bounds(min=1, max=200)] = 50


def matches(text: str, words: list[str]) -> bool:
    """Every (casefolded) word occurs in ``text``."""
    folded = text.casefold()
    return all(word in folded for word in words)


def register_search_methods(registry: Registry, node: Node) -> None:
    """``messages.search``."""

    async def search(p: _SearchParams) -> dict[str, Any]:
        """Messages whose text has every word of ``query``, newest first."""
        words = p.query.casefold().split()
        if not words:
            raise ConfigError("give some words to search for")
        contacts = {c.account: c for c in await node.contacts()}

        def label(account: bytes) -> str:
            return (
                "me"
                if account == node.account_key
                else account_label(account, contacts.get(account))
            )

        hits: list[dict[str, Any]] = []
        scanned = 0
        for conversation in await node.conversations():
            peer = conversation.peer_account
            title = label(peer) if peer is not None else conversation.conversation_id
            before: int | None = None
            # (message id, sender account): only a message's sender edits or deletes it.
            deleted: set[tuple[bytes, bytes]] = set()
            edits: dict[tuple[bytes, bytes], str] = {}
            while True:
                page = await node.history(
                    conversation.conversation_id, before_seq=before or (1 << 53) - 1, limit=_PAGE
                )
                scanned += len(page)
                for m in reversed(page):  # newest first: changes before what they change
                    try:
                        content = Content.from_bytes(m.body, max_size=64 * 1024)
                    except (P2PChatError, ValueError):
                        continue  # stored by a newer version or damaged: not searchable
                    change = amendment_of(content)
                    if isinstance(change, DeleteBody):
                        deleted.add((change.target, m.sender_account))
                    elif isinstance(change, EditBody):  # the newest edit by this account
                        edits.setdefault((change.target, m.sender_account), content.text)
                    if change is not None or (m.message_id, m.sender_account) in deleted:
                        continue  # a reaction, edit or deletion, or deleted by its sender
                    text = edits.get((m.message_id, m.sender_account), content.text)
                    target = m.message_id
                    if matches(text, words):
                        hits.append(
                            {
                                "kind": "dm",
                                "conversation_id": m.conversation_id,
                                "group_id": None,
                                "title": title,
                                "id": target.hex(),
                                "author": m.sender_account.hex(),
                                "label": label(m.sender_account),
                                "sent_at": m.sent_at,
                                "text": text,
                            }
                        )
                if len(page) < _PAGE:
                    break
                before = page[0].seq
        for group in await node.groups():
            if group.status is not GroupStatus.ACTIVE:
                continue
            cursor: bytes | None = None
            while True:  # a page at a time, newest first: never the whole history at once
                posts = node.group_history(group.group_id, limit=_PAGE, before=cursor)
                scanned += len(posts)
                for g in posts:
                    if g.text and matches(g.text, words):
                        hits.append(
                            {
                                "kind": "group",
                                "conversation_id": None,
                                "group_id": group.group_id.hex(),
                                "title": group.name,
                                "id": g.ref.event_id.hex(),
                                "author": g.ref.account.hex(),
                                "label": label(g.ref.account),
                                "sent_at": g.ref.ts,
                                "text": g.text,
                            }
                        )
                if len(posts) < _PAGE:
                    break
                cursor = posts[0].ref.event_id
        hits.sort(key=lambda h: (-h["sent_at"], h["id"]))
        return {"hits": hits[: p.limit], "total": len(hits), "scanned": scanned}

    registry.add("messages.search", search, scope="read", params=_SearchParams)
