"""The inbox: contact requests, DMs and groups in one list, most recent first."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Footer, ListItem, ListView, Static

from ..inert import peer_text
from ..link import Event
from ..model import InboxEntry, sort_inbox
from .base import NodeScreen
from .prompt import Prompt

__all__ = ["InboxScreen", "InboxRow"]

_ICONS = {"dm": "@", "request": "?", "public": "#", "private": "*", "live": "\u25b6"}
_RELOADING_EVENTS = ("dm.", "contact.", "group.message", "group.changed")


class InboxRow(ListItem):
    def __init__(self, entry: InboxEntry, when: str) -> None:
        title = Text(_ICONS.get(entry.kind, " ") + " ", style="bold")
        title.append_text(peer_text(entry.title, "bold" if entry.unread else "", limit=60))
        if entry.kind == "request":
            title.append("  wants to talk: a accept, x decline, b block", style="italic")
        if entry.status != "active":
            title.append(f"  ({entry.status})", style="dim")
        meta = Text()
        if entry.muted:
            meta.append("muted ", style="dim")
        if entry.mentions:
            meta.append(f" @{entry.mentions} ", style="reverse bold")
            meta.append(" ")
        if entry.unread:
            meta.append(f" {entry.unread} ", style="reverse bold")
            meta.append(" ")
        meta.append(when, style="dim")
        super().__init__(
            Horizontal(
                Static(title, markup=False, classes="title"),
                Static(meta, markup=False, classes="meta"),
            )
        )
        self.entry = entry
        if entry.unread:
            self.add_class("unread")


class InboxScreen(NodeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", show=True),
        Binding("n", "new_dm", "New DM"),
        Binding("c", "contacts", "Contacts"),
        Binding("g", "new_group", "New group"),
        Binding("j", "join", "Join"),
        Binding("s", "search", "Find groups"),
        Binding("p", "nearby", "Nearby"),
        Binding("slash", "find_messages", "Search"),
        Binding("a", "accept", "Accept", show=False),
        Binding("x", "decline", "Decline", show=False),
        Binding("b", "block", "Block", show=False),
        Binding("m", "mute", "Mute"),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    entries: reactive[tuple[InboxEntry, ...]] = reactive(())
    status: reactive[str] = reactive("connecting to the node…")

    def __init__(self) -> None:
        super().__init__(id="inbox-screen")
        self._reload_pending = False

    def compose(self) -> ComposeResult:
        yield Static(id="status", markup=False)
        yield ListView(id="inbox")
        yield Static(
            "Nothing yet. n: write to someone (their account key), g: create a group, "
            "j: join one with an invite, s: find public groups by tag.",
            id="empty",
            markup=False,
        )
        yield Footer()

    def watch_status(self, status: str) -> None:
        self.query_one("#status", Static).update(Text(status))

    async def watch_entries(self, entries: tuple[InboxEntry, ...]) -> None:
        inbox = self.query_one("#inbox", ListView)
        keep = self.selected.key if self.selected else None
        now = self.chat.now_ms()
        await inbox.clear()
        await inbox.extend(
            InboxRow(e, self.chat.clock.short(e.last_activity, now)) for e in entries
        )
        keys = [e.key for e in entries]
        inbox.index = keys.index(keep) if keep in keys else (0 if keys else None)
        self.query_one("#empty", Static).display = not entries

    @property
    def selected(self) -> InboxEntry | None:
        row = self.query_one("#inbox", ListView).highlighted_child
        return row.entry if isinstance(row, InboxRow) else None

    async def reload(self) -> None:
        link, app = self.chat.link, self.chat
        conversations: list[dict[str, Any]] = await link.call("dm.conversations")
        requests: list[dict[str, Any]] = await link.call("contacts.requests")
        groups: list[dict[str, Any]] = await link.call("groups.list")
        unread = {c["peer"]: int(c["unread"]) for c in conversations}
        entries = [
            InboxEntry(
                key=f"request:{r['account']}",
                kind="request",
                title=str(r["label"]),
                target=str(r["account"]),
                last_activity=int(r["updated_at"]),
                unread=unread.get(r["account"], 0),
            )
            for r in requests
        ]
        asking = {r["account"] for r in requests}
        for c in conversations:
            if c["peer"] in asking:
                continue
            key = str(c["conversation_id"])
            entries.append(
                InboxEntry(
                    key=key,
                    kind="dm",
                    title=str(c["label"] or c["conversation_id"]),
                    target=key,
                    last_activity=int(c["last_activity"]),
                    unread=int(c["unread"]),
                    muted=key in app.settings.muted,
                )
            )
        for g in groups:
            gid = str(g["group_id"])
            key = f"group:{gid}"
            if gid not in app.group_activity and g["status"] == "active":
                last = await link.call("groups.history", {"group": gid, "limit": 1})
                app.group_activity[gid] = max([int(m["sent_at"]) for m in last] or [0])
            entries.append(
                InboxEntry(
                    key=key,
                    kind=str(g["kind"]),
                    title=str(g["name"]),
                    target=gid,
                    last_activity=max(app.group_activity.get(gid, 0), int(g["joined_at"])),
                    unread=app.group_unread.get(gid, 0),
                    mentions=app.group_mentions.get(gid, 0),
                    muted=key in app.settings.muted,
                    status=str(g["status"]),
                )
            )
        self.entries = tuple(sort_inbox(entries))
        me = str(link.node.get("fingerprint", ""))
        self.status = f"p2pchat \u00b7 you are {me[:19]} \u00b7 connected"

    async def node_event(self, event: Event) -> None:
        if event.type.startswith(_RELOADING_EVENTS) and not self._reload_pending:
            self._reload_pending = True
            self.set_timer(0.15, self._reload_soon)

    def _reload_soon(self) -> None:
        self._reload_pending = False
        self.io(self.reload())

    # -- actions ----------------------------------------------------------------------

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, InboxRow):
            self.chat.open_entry(event.item.entry)

    def action_open(self) -> None:
        if self.selected is not None:
            self.chat.open_entry(self.selected)

    def action_contacts(self) -> None:
        self.chat.open_contacts()

    def action_search(self) -> None:
        self.chat.open_discover()

    def action_nearby(self) -> None:
        self.chat.open_nearby()

    def action_find_messages(self) -> None:
        def then(query: str | None) -> None:
            if query:
                self.chat.open_search(query)

        self.app.push_screen(Prompt("Search your messages for:", placeholder="words"), then)

    def action_new_dm(self) -> None:
        def then(who: str | None) -> None:
            if who:
                self.chat.open_dm(who)

        self.app.push_screen(
            Prompt("Write to (a contact's name or account key):", placeholder="64 hex digits"),
            then,
        )

    def action_new_group(self) -> None:
        def then(spec: str | None) -> None:
            if not spec:
                return
            name, _, kind = spec.partition(" ")
            params: dict[str, Any] = {"name": name}
            if kind.strip():
                params["kind"] = kind.strip()
            self.io(self._create(params))

        self.app.push_screen(
            Prompt("New group: NAME [public|private|live]", placeholder="book-club private"),
            then,
        )

    async def _create(self, params: dict[str, Any]) -> None:
        info = await self.chat.link.call("groups.create", params)
        self.notify(f"Created {info['kind']} group", markup=False)
        await self.reload()

    def action_join(self) -> None:
        def then(invite: str | None) -> None:
            if invite:
                self.io(self._join(invite))

        self.app.push_screen(Prompt("Join a group: paste an invite link or a group id"), then)

    async def _join(self, invite: str) -> None:
        self.notify("Joining… (fetching the group from the network)")
        await self.chat.link.call("groups.join", {"invite": invite})
        await self.reload()

    def _request_action(self, method: str, done: str) -> None:
        entry = self.selected
        if entry is None or entry.kind not in ("request", "dm"):
            return
        account = entry.target.removeprefix("dm:")

        async def act() -> None:
            await self.chat.link.call(method, {"contact": account})
            self.notify(done)
            await self.reload()

        self.io(act())

    def action_accept(self) -> None:
        self._request_action("contacts.accept", "Accepted: you can now write to each other")

    def action_decline(self) -> None:
        self._request_action("contacts.decline", "Declined")

    def action_block(self) -> None:
        self._request_action("contacts.block", "Blocked")

    def action_mute(self) -> None:
        entry = self.selected
        if entry is None:
            return
        muted = self.chat.settings.toggle_mute(entry.key)
        self.notify("Muted" if muted else "Unmuted")
        self.io(self.reload())
