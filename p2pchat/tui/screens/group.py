"""A group's details: members and roles, invite link, polls and buys, leave."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Footer, Static

from ..inert import peer_text
from ..link import Event
from ..threads import GroupThread
from ..widgets.render import render_buy, render_poll
from .base import NodeScreen
from .share import ShareScreen

__all__ = ["GroupScreen"]


class GroupScreen(NodeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("i", "invite", "Invite link"),
        Binding("q", "qr", "QR code"),
        Binding("l", "leave", "Leave"),
    ]

    members: reactive[tuple[dict[str, Any], ...]] = reactive(())
    invite: reactive[str] = reactive("")

    def __init__(self, thread: GroupThread, *, make_invite: bool = False) -> None:
        super().__init__(id="group-screen")
        self.thread = thread
        self.make_invite = make_invite
        self.info: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        with Horizontal(id="group-body"):
            with VerticalScroll(id="members-panel"):
                yield Static(id="members", markup=False)
            with VerticalScroll(id="group-side"):
                yield Static(id="about", markup=False)
                yield Static(id="invite", markup=False)
                yield Static(id="view", markup=False)
        yield Footer()

    async def reload(self) -> None:
        call = self.chat.link.call
        self.info = await call("groups.info", {"group": self.thread.target})
        self.members = tuple(await call("groups.members", {"group": self.thread.target}))
        view = await self.thread.view()
        title = peer_text(str(self.info["name"]), "bold", limit=50)
        title.append(
            f"  {self.info['kind']} group \u00b7 {self.info['members']} members"
            f" \u00b7 you are {self.info['role']}",
            style="dim",
        )
        self.query_one("#title", Static).update(title)
        about = Text("Tags: ", style="dim")
        about.append_text(peer_text(", ".join(self.info["tags"]) or "none"))
        if self.info.get("about"):
            about.append("\n")
            about.append_text(peer_text(str(self.info["about"]), multiline=True))
        self.query_one("#about", Static).update(about)
        cards = Text()
        for poll in view["polls"]:
            cards.append_text(render_poll(poll))
            cards.append("\n\n")
        for buy in view["buys"]:
            cards.append_text(render_buy(buy))
            cards.append("\n\n")
        self.query_one("#view", Static).update(cards)
        if self.make_invite:
            self.make_invite = False
            await self._invite()

    def watch_members(self, members: tuple[dict[str, Any], ...]) -> None:
        text = Text(f"Members ({len(members)})\n", style="bold")
        for m in members:
            text.append(f"{m['role']:<9} ", style="dim")
            label = "you" if m["me"] else str(m["label"])
            text.append_text(peer_text(str(label), limit=24))
            about = self.chat.names.about.get(str(m["account"]))
            if about and not m["me"]:
                text.append(" \u2014 ", style="dim")
                text.append_text(peer_text(about, "italic dim", limit=30))
            text.append("\n")
        self.query_one("#members", Static).update(text)

    def watch_invite(self, link: str) -> None:
        text = Text()
        if link:
            text.append("Invite link (one use, 7 days; send it privately):\n", style="bold")
            text.append(link)
            text.append("\nq: show it as a QR code to scan", style="dim")
        else:
            text.append("i: make an invite link", style="dim")
        self.query_one("#invite", Static).update(text)

    async def node_event(self, event: Event) -> None:
        if event.type.startswith("group.") and self.thread.concerns(event):
            await self.reload()

    async def _invite(self) -> None:
        result = await self.chat.link.call("groups.invite", {"group": self.thread.target})
        self.invite = str(result["link"])

    def action_invite(self) -> None:
        self.io(self._invite())

    def action_qr(self) -> None:
        """The invite link as a QR code (made first if there is none yet)."""

        async def show() -> None:
            if not self.invite:
                await self._invite()
            await self.app.push_screen(
                ShareScreen(
                    "Invite link", self.invite, "Scan it with the phone or laptop that joins."
                )
            )

        self.io(show())

    def action_leave(self) -> None:
        async def leave() -> None:
            await self.chat.link.call("groups.leave", {"group": self.thread.target})
            self.notify("You left the group")
            await self.chat.reload_all()
            self.app.pop_screen()

        self.io(leave())
