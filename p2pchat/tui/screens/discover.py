"""Find public and live groups by tag, and join one."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, ListItem, ListView, Static

from ..inert import peer_text
from .base import NodeScreen

__all__ = ["DiscoverScreen"]


class ResultRow(ListItem):
    def __init__(self, group: dict[str, Any]) -> None:
        text = peer_text(str(group["name"]), "bold", limit=50)
        text.append(f"  {group['kind']}", style="dim")
        if group.get("members_seen") is not None:
            text.append(f" \u00b7 ~{group['members_seen']} members", style="dim")
        if group.get("joined"):
            text.append("  joined", style="italic")
        super().__init__(Static(text, markup=False))
        self.group = group


class DiscoverScreen(NodeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self) -> None:
        super().__init__(id="discover-screen")

    def compose(self) -> ComposeResult:
        yield Static(Text("Find public groups by tag", style="bold"), markup=False)
        yield Input(placeholder="a tag, e.g. books (Enter searches)", id="tag")
        yield ListView(id="results")
        yield Static(id="found", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#tag", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        tag = event.value.strip()
        if tag:
            self.io(self._search(tag))

    async def _search(self, tag: str) -> None:
        found = await self.chat.link.call("groups.search", {"tag": tag})
        results = self.query_one("#results", ListView)
        await results.clear()
        await results.extend(ResultRow(g) for g in found)
        summary = Text(f"{len(found)} group{'s' if len(found) != 1 else ''} tagged ")
        summary.append_text(peer_text(tag, limit=32))
        summary.append(" \u00b7 Enter on one joins it" if found else "", style="dim")
        self.query_one("#found", Static).update(summary)
        if found:
            results.index = 0
            results.focus()

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ResultRow):
            group = event.item.group

            async def join() -> None:
                self.notify("Joining…")
                await self.chat.link.call("groups.join", {"invite": group["group_id"]})
                self.notify("Joined")
                await self.chat.reload_all()
                self.app.pop_screen()

            self.io(join())
