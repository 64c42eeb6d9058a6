"""A conversation (DM or group): messages, paged history, composer and /commands."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Footer, Static

from p2pchat.text import size_text

from ..inert import inert, peer_text
from ..link import Event
from ..model import ChatLine, parse_command
from ..threads import GroupThread, Thread
from ..widgets.composer import Composer
from ..widgets.messages import MessageList
from .base import NodeScreen

__all__ = ["HELP", "CommandError", "ConversationScreen", "merge_pages", "run_command"]

_MESSAGE_EVENTS = (
    "dm.received",
    "dm.delivery",
    "group.message",
    "group.changed",
    "device.history_progress",
)


def merge_pages(older: list[ChatLine], latest: list[ChatLine]) -> list[ChatLine]:
    """The pages already scrolled back to, followed by a fresh latest page."""
    if not latest:
        return older
    keys = {line.key for line in latest}
    first = latest[0].key
    kept: list[ChatLine] = []
    for line in older:
        if line.key == first:
            break
        if line.key not in keys:
            kept.append(line)
    return kept + latest


class Messages(MessageList):
    """The message list, with the keys that act on the selected message."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "screen.reply", "Reply"),
        Binding("plus,equals_sign", "screen.react", "React"),
        Binding("e", "screen.edit", "Edit", show=False),
        Binding("d", "screen.delete", "Delete", show=False),
        Binding("f", "screen.save_files", "Save file", show=False),
        Binding("pageup", "screen.older", "Older", show=False),
        *(Binding(str(n), f"screen.vote({n})", "Vote", show=n == 1) for n in range(1, 10)),
    ]


class ConversationScreen(NodeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+o", "older", "Older"),
        Binding("ctrl+e", "editor", "$EDITOR"),
        Binding("ctrl+g", "details", "Details"),
        Binding("ctrl+l", "live", "Live", show=False),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    reply_to: reactive[ChatLine | None] = reactive(None)

    def __init__(self, thread: Thread) -> None:
        super().__init__(id="conversation-screen")
        self.thread = thread
        self.lines: list[ChatLine] = []
        self.polls: dict[str, dict[str, Any]] = {}
        self.buys: dict[str, dict[str, Any]] = {}
        self.no_more = False

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        yield Messages(id="messages")
        yield Static(id="reply-bar", markup=False)
        yield Static(id="transfer", markup=False)
        yield Composer(id="composer", placeholder="Message  (Enter: send, Ctrl+N: new line, /help)")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#transfer", Static).display = False
        self.query_one("#composer", Composer).focus()
        self.watch_reply_to(None)
        self.show_title()

    def show_title(self) -> None:
        title = peer_text(self.thread.title, "bold", limit=50)
        if self.thread.is_group:
            title.append(f"  {self.thread.kind} group", style="dim")
        else:
            account = self.thread.target.removeprefix("dm:")
            if self.chat.names.verified(account):
                title.append("  \u2713 verified", style="green")
            else:
                title.append("  unverified: /verify to compare safety numbers", style="dim")
        if self.thread.key in self.chat.settings.muted:
            title.append("  muted", style="dim")
        self.query_one("#title", Static).update(title)

    def watch_reply_to(self, line: ChatLine | None) -> None:
        bar = self.query_one("#reply-bar", Static)
        bar.display = line is not None
        if line is not None:
            text = Text("Replying to ", style="dim")
            text.append_text(peer_text(self.chat.names.label(line.author) + ": ", "bold"))
            text.append_text(peer_text(line.text, "italic", limit=60))
            text.append("  (Esc cancels)", style="dim")
            bar.update(text)

    # -- loading ----------------------------------------------------------------------

    async def reload(self) -> None:
        latest = await self.thread.latest()
        self.lines = merge_pages(self.lines, latest)
        if isinstance(self.thread, GroupThread):
            view = await self.thread.view()
            self.polls = {p["poll_id"]: p for p in view["polls"]}
            self.buys = {b["buy_id"]: b for b in view["buys"]}
        await self._show_lines(follow=True)
        await self.thread.mark_read()
        self.chat.mark_read(self.thread)
        self.show_title()

    async def _show_lines(self, *, follow: bool) -> None:
        await self.query_one("#messages", MessageList).show(
            self.lines,
            self.chat.names,
            self.chat.clock,
            polls=self.polls,
            buys=self.buys,
            follow=follow,
        )

    async def node_event(self, event: Event) -> None:
        if not self.is_mounted:
            return  # pushed but not mounted yet (it loads once shown), or closed
        if event.type in _MESSAGE_EVENTS and self.thread.concerns(event):
            await self.reload()
        elif event.type == "contact.changed":
            self.show_title()
        elif event.type == "file.progress":
            self.show_transfer(event.data)

    def show_transfer(self, data: dict[str, Any]) -> None:
        """One line for the latest attachment moving: up (sealing) or down (fetching)."""
        bar = self.query_one("#transfer", Static)
        done, total = int(data.get("done") or 0), int(data.get("total") or 0)
        arrow = "\u21e1" if data.get("direction") == "up" else "\u21e3"
        text = Text(arrow + " ", style="bold")
        text.append_text(peer_text(str(data.get("name") or "file"), limit=40))
        state = data.get("state")
        if state == "failed":
            text.append("  failed: ", style="red")
            text.append_text(peer_text(str(data.get("reason") or ""), "red", limit=60))
        elif state == "done":
            text.append(f"  done ({size_text(total)})", style="green")
        else:
            share = f"{100 * done // total}%" if total else ""
            text.append(f"  {share} {size_text(done)} of {size_text(total)}", style="dim")
        bar.update(text)
        bar.display = True

    async def load_older(self) -> int:
        if not self.lines or self.no_more:
            return 0
        older = await self.thread.before(self.lines[0])
        if not older:
            self.no_more = True
            self.notify("This is the beginning of the conversation")
            return 0
        self.lines = older + self.lines
        await self._show_lines(follow=False)
        return len(older)

    # -- composer ---------------------------------------------------------------------

    def on_composer_submitted(self, event: Composer.Submitted) -> None:
        event.composer.clear()
        text = event.text.strip("\n")
        command = parse_command(text)
        if command is None:
            if text.startswith("//"):
                text = text[1:]
            self.io(self._send(text, self.reply_to))
            self.reply_to = None
        else:
            self.io(self._command(*command))

    async def _send(self, text: str, reply_to: ChatLine | None) -> None:
        await self.thread.send(text, reply_to)
        messages = self.query_one("#messages", MessageList)
        messages.index = None  # show what we sent, wherever the selection was
        await self.reload()

    async def _command(self, name: str, arg: str) -> None:
        try:
            await run_command(self, name, arg)
        except CommandError as exc:
            self.notify(str(exc), severity="warning", markup=False, timeout=8)

    @property
    def selected(self) -> ChatLine | None:
        return self.query_one("#messages", MessageList).selected_line

    # -- actions ----------------------------------------------------------------------

    def action_back(self) -> None:
        if self.reply_to is not None:
            self.reply_to = None
            return
        self.app.pop_screen()

    def action_older(self) -> None:
        self.io(self.load_older())

    def action_reply(self) -> None:
        if self.selected is not None:
            self.reply_to = self.selected
            self.query_one("#composer", Composer).focus()

    def _prefill(self, text: str) -> None:
        composer = self.query_one("#composer", Composer)
        composer.text = text
        composer.move_cursor(composer.document.end)
        composer.focus()

    def action_react(self) -> None:
        if self.selected is not None:
            self._prefill("/react ")

    def action_edit(self) -> None:
        line = self.selected
        if line is not None and line.mine:
            self._prefill("/edit " + line.text)

    def action_delete(self) -> None:
        if self.selected is not None:
            self.io(self._command("delete", ""))

    def action_save_files(self) -> None:
        self.io(self._command("save", ""))

    def action_vote(self, n: int) -> None:
        self.io(self._command("vote", str(n)))

    def action_details(self) -> None:
        self.io(self._command("info", ""))

    def action_live(self) -> None:
        self.io(self._command("live", ""))

    async def action_editor(self) -> None:
        composer = self.query_one("#composer", Composer)
        text = self.chat.edit_in_editor(composer.text)
        if text is not None:
            composer.text = text.rstrip("\n")
            composer.move_cursor(composer.document.end)


# -- /commands typed in the composer ---------------------------------------------------

_HOUR_MS = 3_600_000

HELP = """\
/reply              reply to the selected message (or select it and press r)
/react EMOJI        react to the selected message (+ on a message)
/edit TEXT          replace the text of your selected message (e)
/delete             delete your selected message (d; moderators: any in a group)
/file PATH [TEXT]   send a file (a path on the node's machine), with a caption
/save [DIR]         save the selected message's files (f; default ~/Downloads)
/vote N[,M]         vote in the selected poll (or press 1-9 on it)
/poll Q | A | B     start a poll (closes in 24 h; add "| 48h" for another deadline)
/share TITLE URL    share a link as a card
/buy TITLE | A, B | QUOTA [| 72h]   start a group buy
/join-buy N QTY     join the selected group buy with QTY units of option N
/info               members, roles, invite link, polls (Ctrl+G)
/invite             make an invite link for this group
/leave              leave this group
/live               open the watch-together timeline (live groups, Ctrl+L)
/mute, /unmute      no bell (nor desktop notification) for this conversation
/notify on|off      desktop notifications (needs the notify extra and a desktop)
/verify             compare safety numbers with this contact
/rename NAME        rename this contact
//text             send text that starts with a slash"""


class CommandError(Exception):
    """A command typed wrong: shown to the person, nothing sent."""


def _group(screen: ConversationScreen, name: str) -> GroupThread:
    if not isinstance(screen.thread, GroupThread):
        raise CommandError(f"/{name} is for groups")
    return screen.thread


async def _send_file(screen: ConversationScreen, arg: str) -> None:
    """``/file PATH [caption]``: seal the file into the node's store, then send it."""
    try:
        words = shlex.split(arg)
    except ValueError as exc:
        raise CommandError(f"/file PATH [TEXT]: {exc}") from None
    if not words:
        raise CommandError("/file PATH [TEXT] (quote a path with spaces)")
    # The node reads the file (it says so if there is none): the path is on its machine,
    # which is this one unless the chat connects over TCP.
    added = await screen.chat.link.call("files.add", {"path": _local(words[0])})
    await screen.thread.send(" ".join(words[1:]), screen.reply_to, [str(added["file_id"])])
    screen.reply_to = None
    await screen.reload()


def _local(path: str) -> str:
    """``~`` expanded and made absolute (the node's working directory is not ours)."""
    return str(Path(path).expanduser().absolute())


def _downloads() -> str:
    folder = Path.home() / "Downloads"
    return str(folder if folder.is_dir() else Path.cwd())


async def _save_files(screen: ConversationScreen, line: ChatLine | None, arg: str) -> None:
    """Fetch (if needed) and save the selected message's files into a folder; the node
    names each file after its sender's name for it, made safe for a file system."""
    if line is None or not line.files:
        raise CommandError("select a message with a file first (📎)")
    folder = _local(arg) if arg else _downloads()
    for ref in line.files:
        screen.notify(f"Saving {inert(ref.name, limit=40)}…", markup=False)
        params = {"file": ref.file_id, "out": folder}
        saved = await screen.chat.link.call("files.get", params)
        screen.notify(f"Saved to {inert(str(saved['path']), limit=120)}", markup=False)


def _hours(text: str, default: int) -> int:
    text = text.strip().lower().removesuffix("h")
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise CommandError(f"not a number of hours: {text!r}")
    return int(text)


async def run_command(screen: ConversationScreen, name: str, arg: str) -> None:
    """Run ``/name arg`` for ``screen``; CommandError for a mistake, p2pchat errors pass."""
    chat, thread, selected = screen.chat, screen.thread, screen.selected
    call = chat.link.call
    if name == "help":
        screen.notify(HELP, title="Commands", markup=False, timeout=20)
    elif name == "reply":
        screen.action_reply()
    elif name in ("react", "edit", "delete"):
        if selected is None:
            raise CommandError("select a message first (Tab to the list, arrows to pick)")
        if name == "react":
            if not arg:
                raise CommandError("/react EMOJI, e.g. /react 👍")
            await thread.react(selected, arg.split()[0])
        elif name == "edit":
            if not selected.mine:
                raise CommandError("you can only edit your own messages")
            await thread.edit(selected, arg)
        else:
            await thread.delete(selected)
        await screen.reload()
    elif name == "file":
        await _send_file(screen, arg)
    elif name == "save":
        await _save_files(screen, selected, arg)
    elif name == "vote":
        group = _group(screen, name)
        if selected is None or selected.key not in screen.polls:
            raise CommandError("select a poll first")
        try:
            choices = sorted({int(n) - 1 for n in arg.replace(",", " ").split()})
        except ValueError:
            raise CommandError("/vote N[,M]: option numbers from 1") from None
        options = len(screen.polls[selected.key]["options"])
        if not choices or choices[0] < 0 or choices[-1] >= options:
            raise CommandError(f"this poll has options 1 to {options}")
        await group.vote(selected.key, choices)
        screen.notify(f"Voted for option {', '.join(str(c + 1) for c in choices)}")
        await screen.reload()
    elif name == "poll":
        group = _group(screen, name)
        parts = [p.strip() for p in arg.split("|")]
        hours = 24
        if len(parts) > 3 and parts[-1].lower().rstrip("h").isdigit():
            hours = _hours(parts.pop(), 24)
        if len(parts) < 3 or not all(parts):
            raise CommandError("/poll QUESTION | OPTION | OPTION [| OPTION…] [| 48h]")
        deadline = chat.now_ms() + hours * _HOUR_MS
        poll = {"group": group.target, "question": parts[0], "options": parts[1:]}
        await call("groups.poll", {**poll, "deadline": deadline})
        await screen.reload()
    elif name == "share":
        group = _group(screen, name)
        title, _, url = arg.rpartition(" ")
        if not title or not url:
            raise CommandError("/share TITLE URL")
        await call("groups.share", {"group": group.target, "title": title, "url": url})
        await screen.reload()
    elif name == "buy":
        group = _group(screen, name)
        parts = [p.strip() for p in arg.split("|")]
        if len(parts) not in (3, 4) or not parts[2].isdigit():
            raise CommandError("/buy TITLE | OPTION, OPTION | QUOTA [| 72h]")
        hours = _hours(parts[3] if len(parts) == 4 else "", 72)
        buy: dict[str, Any] = {
            "group": group.target,
            "title": parts[0],
            "options": [o.strip() for o in parts[1].split(",") if o.strip()],
            "quota": int(parts[2]),
            "deadline": chat.now_ms() + hours * _HOUR_MS,
        }
        await call("groups.buy", buy)
        await screen.reload()
    elif name == "join-buy":
        group = _group(screen, name)
        if selected is None or selected.key not in screen.buys:
            raise CommandError("select a group buy first")
        numbers = arg.split()
        if len(numbers) != 2 or not all(n.isdigit() for n in numbers):
            raise CommandError("/join-buy OPTION QUANTITY (0 withdraws)")
        option, quantity = int(numbers[0]) - 1, int(numbers[1])
        join = {"group": group.target, "buy": selected.key, "option": option}
        await call("groups.buy_join", {**join, "quantity": quantity})
        await screen.reload()
    elif name in ("info", "members", "invite"):
        chat.open_group_info(_group(screen, name), invite=name == "invite")
    elif name == "leave":
        group = _group(screen, name)
        await call("groups.leave", {"group": group.target})
        screen.notify("You left the group")
        screen.app.pop_screen()
    elif name == "live":
        group = _group(screen, name)
        if group.kind != "live":
            raise CommandError("watch-together is for live groups")
        chat.open_live(group)
    elif name in ("mute", "unmute"):
        if (thread.key in chat.settings.muted) != (name == "mute"):
            chat.settings.toggle_mute(thread.key)
        screen.notify("Muted: no bell" if name == "mute" else "Unmuted")
    elif name == "notify":
        if arg not in ("on", "off"):
            raise CommandError("/notify on, or /notify off")
        chat.settings.set_desktop(arg == "on")
        if arg == "off":
            screen.notify("Desktop notifications off (the bell still rings)")
        elif chat.desktop.available:
            screen.notify("Desktop notifications on")
        else:
            screen.notify(
                "Desktop notifications on, but none can be shown here: install "
                "p2pchat[notify] and run it on a desktop",
                severity="warning",
            )
    elif name == "verify":
        if isinstance(thread, GroupThread):
            raise CommandError("/verify is for direct messages")
        chat.open_safety(thread.target.removeprefix("dm:"))
    elif name == "rename":
        if isinstance(thread, GroupThread) or not arg:
            raise CommandError("/rename NAME, in a direct message")
        account = thread.target.removeprefix("dm:")
        await call("contacts.rename", {"contact": account, "name": arg})
        thread.title = arg
        await chat.contacts_edited()
        screen.notify("Renamed")
    else:
        raise CommandError(f"unknown command /{name}: /help lists them")
