"""Full-text search over our messages (``messages.search``): hits newest first, Enter
opens the conversation or group a hit is in."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, ListItem, ListView, Static

from ..inert import peer_text
from ..model import InboxEntry
from .base import NodeScreen

__all__ = ["SearchScreen"]

#: What a search cannot find, and why nothing is indexed (rpc.md messages.search).
_NOT_INDEXED = (
    "Nothing is indexed on disk (an index would be an unencrypted copy of every word): "
    "each search reads your messages. Not found: what is inside files (captions are), "
    "private-group messages not decrypted yet, deleted messages."
)


class HitRow(ListItem):
    def __init__(self, hit: dict[str, Any], entry: InboxEntry, when: str) -> None:
        where = ("#" if hit["kind"] == "group" else "") + str(hit["title"])
        text = peer_text(where, "bold", limit=30)
        text.append(f"  {when}\n  ", style="dim")
        text.append_text(peer_text(str(hit["label"]) + ": ", "bold"))
        text.append_text(peer_text(str(hit["text"]), limit=200))
        super().__init__(Static(text, markup=False))
        self.entry = entry


class SearchScreen(NodeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open", "Open"),
    ]

    def __init__(self, query: str) -> None:
        super().__init__(id="search-screen")
        self.query_text = query
        self.hits: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        yield ListView(id="hits")
        yield Static(_NOT_INDEXED, classes="hint", markup=False)
        yield Footer()

    async def reload(self) -> None:
        link = self.chat.link
        found = await link.call("messages.search", {"query": self.query_text, "limit": 100})
        kinds = {str(g["group_id"]): str(g["kind"]) for g in await link.call("groups.list")}
        self.hits = list(found["hits"])
        title = Text("Search ", style="bold")
        title.append_text(peer_text(self.query_text, "bold italic", limit=40))
        shown = len(self.hits)
        title.append(
            f"  {found['total']} found in {found['scanned']} messages"
            + (f", newest {shown} shown" if found["total"] > shown else ""),
            style="dim",
        )
        self.query_one("#title", Static).update(title)
        view = self.query_one("#hits", ListView)
        await view.clear()
        await view.extend(HitRow(h, self._entry(h, kinds), self._when(h)) for h in self.hits)
        if self.hits:
            view.index = 0
            view.focus()

    def _when(self, hit: dict[str, Any]) -> str:
        clock = self.chat.clock
        return f"{clock.day(int(hit['sent_at']))} {clock.time(int(hit['sent_at']))}"

    @staticmethod
    def _entry(hit: dict[str, Any], kinds: dict[str, str]) -> InboxEntry:
        if hit["kind"] == "group":
            gid = str(hit["group_id"])
            return InboxEntry(
                key=f"group:{gid}",
                kind=kinds.get(gid, "public"),
                title=str(hit["title"]),
                target=gid,
                last_activity=0,
            )
        key = str(hit["conversation_id"])
        return InboxEntry(key=key, kind="dm", title=str(hit["title"]), target=key, last_activity=0)

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, HitRow):
            self.chat.open_entry(event.item.entry)

    def action_open(self) -> None:
        row = self.query_one("#hits", ListView).highlighted_child
        if isinstance(row, HitRow):
            self.chat.open_entry(row.entry)
