"""``p2pchat chat``: the Textual app, a client of the node's public RPC only."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches

from p2pchat.errors import P2PChatError

from .inert import inert
from .link import Event, Gap, NodeLink
from .model import Clock, InboxEntry, Names, mentions
from .notify import Desktop
from .screens.base import NodeModal, NodeScreen, run_io
from .screens.contacts import ContactsScreen, SafetyScreen
from .screens.conversation import ConversationScreen
from .screens.discover import DiscoverScreen
from .screens.group import GroupScreen
from .screens.inbox import InboxScreen
from .screens.live import LiveScreen
from .screens.nearby import NearbyScreen
from .screens.search import SearchScreen
from .settings import Settings
from .threads import DmThread, GroupThread, Thread

__all__ = ["ChatApp"]

_NOTIFYING = ("dm.received", "group.message", "contact.request")
#: DM contents that change an earlier message: no bell, no notification.
_CHANGES = ("p2pchat/react", "p2pchat/edit", "p2pchat/delete")


class ChatApp(App[None]):
    """The inbox first; conversations, contacts, groups and live timelines on top."""

    CSS_PATH = "chat.tcss"
    TITLE = "p2pchat"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(
        self,
        home: Path,
        *,
        token: str | None = None,
        tcp: tuple[str, int] | None = None,
        clock: Clock | None = None,
        settings: Settings | None = None,
        now_ms: float | None = None,
    ) -> None:
        super().__init__()
        self.link = NodeLink(home, token=token, tcp=tcp)
        self.clock = clock or Clock()
        self.settings = settings if settings is not None else Settings.in_home(home)
        self.names = Names()
        self.group_unread: dict[str, int] = {}
        #: Per group: unread messages that mention us (``@`` and our display name).
        self.group_mentions: dict[str, int] = {}
        self.group_activity: dict[str, int] = {}
        self.connected = False
        self.bells = 0
        self.desktop = Desktop(enabled=self.settings.desktop)
        self._fixed_now = now_ms

    def now_ms(self) -> int:
        return int(self._fixed_now if self._fixed_now is not None else time.time() * 1000)

    # -- lifecycle ----------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(InboxScreen())
        self.run_worker(self.link.run(self._on_item, self._on_state), group="link")

    async def _on_state(self, connected: bool, why: str) -> None:
        self.connected = connected
        inbox = self._inbox()
        if not connected:
            if inbox is not None:
                inbox.status = f"not connected: {inert(why, limit=120)} (retrying)"
            return
        self.names.me = str(self.link.node.get("account", ""))
        await self.reload_all()

    async def reload_all(self) -> None:
        """Re-read everything every open screen shows (connected, or after a gap)."""
        try:
            await self.refresh_names()
            for screen in list(self.screen_stack):
                if isinstance(screen, NodeScreen | NodeModal):
                    await screen.reload()
        except P2PChatError as exc:
            self.notify(inert(str(exc)), severity="error", markup=False)

    async def refresh_names(self) -> None:
        contacts = await self.link.call("contacts.list")
        self.names.load(contacts, await self.link.call("profile.list"))

    async def contacts_edited(self) -> None:
        """After this app renamed, verified or removed a contact: re-read the names and the
        screens that show them (the node sends ``contact.changed`` for no rename or
        verification)."""
        await self.refresh_names()
        for screen in list(self.screen_stack):
            if isinstance(screen, ContactsScreen | InboxScreen):
                await screen.reload()
            elif isinstance(screen, ConversationScreen):
                screen.show_title()

    async def _on_item(self, item: Event | Gap) -> None:
        if isinstance(item, Gap):
            self.notify("The node restarted or we fell behind: reloading")
            await self.reload_all()
            return
        await self._follow(item)
        for screen in list(self.screen_stack):
            if isinstance(screen, NodeScreen | NodeModal):
                try:
                    await screen.node_event(item)
                except P2PChatError as exc:
                    self.notify(inert(str(exc)), severity="error", markup=False)
                except NoMatches:
                    # The screen's widgets went away under the event: it (or the whole
                    # app) is being closed, and nobody sees it any more.
                    self.log.warning(f"{type(screen).__name__} closed during {item.type}")

    async def _follow(self, event: Event) -> None:
        """App-wide bookkeeping for one event: names, group unread counts, the bell."""
        data = event.data
        if event.type in ("contact.changed", "contact.request", "dm.received"):
            await self.refresh_names()  # a message may carry the name its sender claims
        if event.type == "group.message":
            gid = str(data.get("group_id"))
            self.group_activity[gid] = max(self.group_activity.get(gid, 0), int(data["sent_at"]))
            if data.get("author") == self.names.me or self._viewing(f"group:{gid}"):
                return
            self.group_unread[gid] = self.group_unread.get(gid, 0) + 1
            mentioned = mentions(str(data.get("text", "")), self.link.node.get("display_name"))
            if mentioned:
                self.group_mentions[gid] = self.group_mentions.get(gid, 0) + 1
            who = self.names.label(str(data.get("author", "")))
            self._ring(f"group:{gid}", mentioned=mentioned, title=f"{who} (group)", body=data)
        elif (
            event.type == "dm.received"
            and not self._viewing(str(data["conversation_id"]))
            and data.get("content_type") not in _CHANGES
        ):
            who = self.names.label(str(data.get("author", "")))
            self._ring(str(data["conversation_id"]), title=who, body=data, direct=True)
        elif event.type == "contact.request":
            who = self.names.label(str(data.get("account", "")))
            self._ring(f"request:{data.get('account')}", title="Contact request", body=who)

    def _viewing(self, key: str) -> bool:
        screen = self.screen
        return isinstance(screen, ConversationScreen) and screen.thread.key == key

    def _ring(
        self,
        key: str,
        *,
        title: str,
        body: str | dict[str, Any],
        mentioned: bool = False,
        direct: bool = False,
    ) -> None:
        """The bell, unless the conversation is muted (a mention rings even then); a
        desktop notification too for DMs, mentions and requests (when available)."""
        if key in self.settings.muted and not mentioned:
            return
        self.bells += 1
        self.bell()
        if not self.settings.desktop or not self.desktop.available:
            return
        if isinstance(body, dict):
            if not (direct or mentioned):
                return  # a group message without a mention: the bell is enough
            body = str(body.get("text", ""))
        self.run_worker(self.desktop.show(title, body), group="notify")

    def _inbox(self) -> InboxScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, InboxScreen):
                return screen
        return None

    def mark_read(self, thread: Thread) -> None:
        if isinstance(thread, GroupThread):
            self.group_unread.pop(thread.target, None)
            self.group_mentions.pop(thread.target, None)

    # -- navigation ---------------------------------------------------------------------

    def _open(self, screen: NodeScreen | NodeModal) -> None:
        """Show ``screen`` and load what it shows once it is mounted."""

        async def show() -> None:
            await self.push_screen(screen)
            await screen.reload()

        run_io(self, show())

    def open_entry(self, entry: InboxEntry) -> None:
        if entry.is_group:
            thread: Thread = GroupThread(
                self.link,
                key=entry.key,
                target=entry.target,
                title=entry.title,
                kind=entry.kind,
                me=self.names.me,
            )
        else:
            target = entry.target if entry.target.startswith("dm:") else "dm:" + entry.target
            thread = DmThread(self.link, key=target, target=target, title=entry.title)
        self._open(ConversationScreen(thread))

    def open_dm(self, who: str) -> None:
        """A DM with a contact name or an account key (resolved by the node)."""

        async def resolve() -> None:
            contacts = await self.link.call("contacts.list")
            wanted = who.strip().lower().replace(" ", "")
            found = [c for c in contacts if wanted in (c["account"], str(c["name"]).lower())]
            account = str(found[0]["account"]) if len(found) == 1 else wanted
            title = str(found[0]["label"]) if len(found) == 1 else self.names.label(account)
            target = "dm:" + account
            self._open(
                ConversationScreen(DmThread(self.link, key=target, target=target, title=title))
            )

        run_io(self, resolve())

    def open_contacts(self) -> None:
        self._open(ContactsScreen())

    def open_safety(self, account: str) -> None:
        self._open(SafetyScreen(account))

    def open_discover(self) -> None:
        self._open(DiscoverScreen())

    def open_nearby(self) -> None:
        self._open(NearbyScreen())

    def open_search(self, query: str) -> None:
        self._open(SearchScreen(query))

    def open_group_info(self, thread: GroupThread, *, invite: bool = False) -> None:
        self._open(GroupScreen(thread, make_invite=invite))

    def open_live(self, thread: GroupThread) -> None:
        self._open(LiveScreen(thread))

    def edit_in_editor(self, text: str) -> str | None:
        """Edit ``text`` in ``$VISUAL`` / ``$EDITOR`` (default vi); None if it failed."""
        editor = shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "message.txt"
            path.write_text(text)
            with self.suspend():
                done = subprocess.run([*editor, str(path)], check=False)  # noqa: S603
            if done.returncode != 0:
                self.notify("The editor failed; nothing changed", severity="warning")
                return None
            return path.read_text()
