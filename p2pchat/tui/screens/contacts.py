"""Contacts: add by key, accept / decline / block requests, rename, remove, verify."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, ListItem, ListView, Static

from p2pchat.qr import contact_link

from ..inert import peer_text
from ..link import Event
from .base import NodeModal, NodeScreen
from .prompt import Prompt
from .share import ShareScreen

__all__ = ["ContactsScreen", "SafetyScreen"]

_STATE_LABELS = {
    "requested_in": "wants to talk",
    "requested_out": "asked",
    "accepted": "",
    "declined": "declined",
    "blocked": "blocked",
}


class ContactRow(ListItem):
    def __init__(self, contact: dict[str, Any], about: str = "") -> None:
        text = peer_text(str(contact["label"]), "bold", limit=40)
        if contact["verified"]:
            text.append(" \u2713 verified", style="green")
        state = _STATE_LABELS.get(contact["state"], contact["state"])
        if state:
            text.append(f"  {state}", style="italic")
        if about:  # their profile's, a claim like their name: inert, on one line
            text.append("\n  ")
            text.append_text(peer_text(about, "italic", limit=70))
        text.append("\n  " + str(contact["fingerprint"]), style="dim")
        super().__init__(Static(text, markup=False))
        self.contact = contact


class ContactsScreen(NodeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open", "Write"),
        Binding("a", "add", "Add"),
        Binding("v", "verify", "Verify"),
        Binding("n", "rename", "Rename"),
        Binding("y", "accept", "Accept"),
        Binding("x", "decline", "Decline", show=False),
        Binding("b", "block", "Block/unblock"),
        Binding("delete,d", "remove", "Remove"),
        Binding("s", "share", "Share mine"),
        Binding("p", "profile", "My profile"),
    ]

    contacts: reactive[tuple[dict[str, Any], ...]] = reactive(())

    def __init__(self) -> None:
        super().__init__(id="contacts-screen")
        self.mine: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Contacts", style="bold"), id="title")
        yield ListView(id="contacts")
        yield Static(
            "No contacts yet. a: add someone by account key (p2pchat status shows yours).",
            id="empty",
            markup=False,
        )
        yield Footer()

    async def watch_contacts(self, contacts: tuple[dict[str, Any], ...]) -> None:
        view = self.query_one("#contacts", ListView)
        index = view.index
        await view.clear()
        about = self.chat.names.about
        await view.extend(ContactRow(c, about.get(str(c["account"]), "")) for c in contacts)
        if contacts:
            view.index = min(index or 0, len(contacts) - 1)
        self.query_one("#empty", Static).display = not contacts

    async def reload(self) -> None:
        call = self.chat.link.call
        self.mine = await call("profile.show")
        self.show_title()
        await self.chat.refresh_names()
        self.contacts = tuple(await call("contacts.list"))

    def show_title(self) -> None:
        title = Text("Contacts", style="bold")
        mine = self.mine or {}
        if mine.get("name"):
            title.append("   you: ", style="dim")
            title.append_text(peer_text(str(mine["name"]), limit=30))
            if mine.get("about"):
                title.append(" \u2014 ", style="dim")
                title.append_text(peer_text(str(mine["about"]), "italic", limit=40))
        else:
            title.append("   p: set your name and about (your contacts see them)", style="dim")
        self.query_one("#title", Static).update(title)

    async def node_event(self, event: Event) -> None:
        if event.type.startswith("contact."):
            await self.reload()

    @property
    def selected(self) -> dict[str, Any] | None:
        row = self.query_one("#contacts", ListView).highlighted_child
        return row.contact if isinstance(row, ContactRow) else None

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        self.action_open()

    def action_open(self) -> None:
        if self.selected is not None:
            self.chat.open_dm(str(self.selected["account"]))

    def action_add(self) -> None:
        def then(answer: str | None) -> None:
            if answer:
                address, _, name = answer.partition(" ")
                params = {"address": address} | ({"name": name.strip()} if name.strip() else {})
                self.io(self._call("contacts.add", params, "Added"))

        self.app.push_screen(
            Prompt("Add a contact: ACCOUNT-KEY (or peer id) [NAME]", placeholder="64 hex digits"),
            then,
        )

    async def _call(self, method: str, params: dict[str, Any], done: str) -> None:
        await self.chat.link.call(method, params)
        self.notify(done)
        await self.chat.contacts_edited()
        if method == "profile.set":
            await self.reload()

    def _on_selected(self, method: str, done: str) -> None:
        if self.selected is not None:
            self.io(self._call(method, {"contact": self.selected["account"]}, done))

    def action_accept(self) -> None:
        self._on_selected("contacts.accept", "Accepted")

    def action_decline(self) -> None:
        self._on_selected("contacts.decline", "Declined")

    def action_block(self) -> None:
        if self.selected is not None:
            blocked = self.selected["state"] == "blocked"
            verb = "unblock" if blocked else "block"
            self._on_selected(f"contacts.{verb}", "Unblocked" if blocked else "Blocked")

    def action_remove(self) -> None:
        self._on_selected("contacts.remove", "Removed")

    def action_rename(self) -> None:
        contact = self.selected
        if contact is None:
            return

        def then(name: str | None) -> None:
            if name:
                params = {"contact": contact["account"], "name": name}
                self.io(self._call("contacts.rename", params, "Renamed"))

        self.app.push_screen(Prompt("New name:", value=str(contact["name"])), then)

    def action_verify(self) -> None:
        if self.selected is not None:
            self.chat.open_safety(str(self.selected["account"]))

    def action_profile(self) -> None:
        """Our name and about text: "NAME | ABOUT" (contacts and group members get it)."""
        mine = self.mine or {}
        value = str(mine.get("name") or "")
        if mine.get("about"):
            value += " | " + str(mine["about"])

        def then(answer: str | None) -> None:
            if answer:
                name, _, about = answer.partition("|")
                params = {"name": name.strip(), "about": about.strip()}
                self.io(self._call("profile.set", params, "Profile sent to your contacts"))

        self.app.push_screen(Prompt("Your profile: NAME | ABOUT", value=value), then)

    def action_share(self) -> None:
        """Our contact link, to copy or to scan: others add us with it."""
        link = contact_link(str(self.chat.link.node.get("account", "")))
        hint = "They add you with it: Contacts, a, paste (or p2pchat contacts add LINK)."
        self.app.push_screen(ShareScreen("Your contact link", link, hint))


class SafetyScreen(NodeModal):
    """Both fingerprints side by side and the safety number to compare out loud."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Close"),
        Binding("v", "verify(True)", "They match: verified"),
        Binding("u", "verify(False)", "Not verified"),
    ]

    safety: reactive[dict[str, Any] | None] = reactive(None)

    def __init__(self, account: str) -> None:
        super().__init__()
        self.account = account

    def compose(self) -> ComposeResult:
        with Vertical(id="safety"):
            yield Static(Text("Verify safety number", style="bold"), markup=False)
            with Horizontal(id="fingerprints"):
                yield Static(id="mine", markup=False)
                yield Static(id="theirs", markup=False)
            yield Static(id="number", markup=False)
            yield Static(
                "Compare the number with them in person or on a call. If it is the same "
                "on both screens, press v.",
                classes="hint",
                markup=False,
            )
            yield Footer()

    async def reload(self) -> None:
        link = self.chat.link
        number = await link.call("contacts.safety_number", {"contact": self.account})
        contacts: list[dict[str, Any]] = await link.call("contacts.list")
        theirs = next((c["fingerprint"] for c in contacts if c["account"] == self.account), "")
        mine = link.node.get("fingerprint", "")
        self.safety = {**number, "mine": mine, "theirs": theirs}

    def watch_safety(self, safety: dict[str, Any] | None) -> None:
        if safety is None:
            return
        name = self.chat.names.label(self.account)
        mine = Text("You\n", style="bold")
        mine.append(_blocks(str(safety["mine"])))
        theirs = peer_text(name, "bold", limit=30)
        theirs.append("\n" + _blocks(str(safety["theirs"])))
        self.query_one("#mine", Static).update(mine)
        self.query_one("#theirs", Static).update(theirs)
        groups = str(safety["safety_number"]).split()
        rows = [" ".join(groups[i : i + 4]) for i in range(0, len(groups), 4)]
        state = "verified" if self.chat.names.verified(self.account) else "not verified yet"
        number = Text("\n".join(rows), style="bold")
        number.append(f"\n\n{name}: {state}", style="dim")
        self.query_one("#number", Static).update(number)

    def action_verify(self, verified: bool) -> None:
        async def mark() -> None:
            params = {"contact": self.account, "verified": verified}
            await self.chat.link.call("contacts.verify", params)
            await self.chat.contacts_edited()  # before the pop, which ends this worker
            self.notify("Verified" if verified else "Marked not verified")
            self.app.pop_screen()

        self.io(mark())


def _blocks(fingerprint: str) -> str:
    """A fingerprint in two lines of four groups, for reading side by side."""
    groups = fingerprint.split()
    return " ".join(groups[:4]) + "\n" + " ".join(groups[4:])
