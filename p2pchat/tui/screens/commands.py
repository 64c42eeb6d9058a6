"""``/commands`` typed in a conversation's composer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..threads import GroupThread

if TYPE_CHECKING:
    from .conversation import ConversationScreen

__all__ = ["HELP", "CommandError", "run_command"]

_HOUR_MS = 3_600_000

HELP = """\
/reply              reply to the selected message (or select it and press r)
/react EMOJI        react to the selected group message (+ on a message)
/edit TEXT          replace the text of your selected group message (e)
/delete             delete the selected group message (d)
/vote N[,M]         vote in the selected poll (or press 1-9 on it)
/poll Q | A | B     start a poll (closes in 24 h; add "| 48h" for another deadline)
/share TITLE URL    share a link as a card
/buy TITLE | A, B | QUOTA [| 72h]   start a group buy
/join-buy N QTY     join the selected group buy with QTY units of option N
/info               members, roles, invite link, polls (Ctrl+G)
/invite             make an invite link for this group
/leave              leave this group
/live               open the watch-together timeline (live groups, Ctrl+L)
/mute, /unmute      no bell for this conversation
/verify             compare safety numbers with this contact
/rename NAME        rename this contact
//text             send text that starts with a slash"""


class CommandError(Exception):
    """A command typed wrong: shown to the person, nothing sent."""


def _group(screen: ConversationScreen, name: str) -> GroupThread:
    if not isinstance(screen.thread, GroupThread):
        raise CommandError(f"/{name} is for groups")
    return screen.thread


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
        await chat.refresh_names()
        screen.notify("Renamed")
    else:
        raise CommandError(f"unknown command /{name}: /help lists them")
