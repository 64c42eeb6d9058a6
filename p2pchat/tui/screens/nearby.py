"""People nearby (the node's mDNS discoveries): pick one to start a conversation."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, ListItem, ListView, Static

from ..inert import peer_text
from ..link import Event
from .base import NodeScreen

__all__ = ["NearbyScreen"]

_EMPTY = (
    "Nobody nearby yet. Nodes on your local network show up here when both run with "
    "mDNS: `p2pchat node run --nearby` (off by default)."
)


class NearbyRow(ListItem):
    def __init__(self, peer: dict[str, Any]) -> None:
        name = peer.get("name")
        # The name is what their node announces on the network: anyone can claim any.
        text = peer_text("~" + str(name), "bold", limit=40) if name else Text("(no name)")
        text.append("  " + str(peer["peer_id"])[:20] + "\u2026", style="dim")
        super().__init__(Static(text, markup=False))
        self.peer = peer


class NearbyScreen(NodeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "write", "Write"),
    ]

    def __init__(self) -> None:
        super().__init__(id="nearby-screen")
        self.peers: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("People nearby (local network)", style="bold"), markup=False)
        yield ListView(id="nearby")
        yield Static(_EMPTY, id="empty", markup=False)
        yield Static(
            "Names here are what each node announces: check the safety number before trusting one.",
            classes="hint",
            markup=False,
        )
        yield Footer()

    async def reload(self) -> None:
        found = await self.chat.link.call("peers.list")
        self.peers = list(found.get("nearby", []))
        view = self.query_one("#nearby", ListView)
        index = view.index
        await view.clear()
        await view.extend(NearbyRow(p) for p in self.peers)
        if self.peers:
            view.index = min(index or 0, len(self.peers) - 1)
            view.focus()
        self.query_one("#empty", Static).display = not self.peers

    async def node_event(self, event: Event) -> None:
        if event.type == "peer.nearby" and self.is_mounted:
            await self.reload()

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        self.action_write()

    def action_write(self) -> None:
        row = self.query_one("#nearby", ListView).highlighted_child
        if not isinstance(row, NearbyRow):
            return
        peer_id = str(row.peer["peer_id"])

        async def start() -> None:
            self.notify("Looking up their account…")
            contact = await self.chat.link.call("contacts.add", {"address": peer_id})
            await self.chat.contacts_edited()
            self.app.pop_screen()
            self.chat.open_dm(str(contact["account"]))

        self.io(start())
