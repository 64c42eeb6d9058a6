"""``p2pchat groups``: interest groups through the running node's RPC API.

GROUP is a group id (64 hex digits), or among your groups a unique name or a unique id
prefix (4 hex digits or more); the node resolves it (``groups.*`` in rpc.md §9.3), so
scripts and people get the same answer. ACCOUNT is an account key or a contact's name.
EVENT (a message, poll) may be the short id ``groups read`` prints: it is matched
against the group's recent messages here, then sent to the node in full.
``groups read --follow`` subscribes *before* reading the history, as ``dm read`` does,
so no message falls between the two.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import click

from ..errors import ConfigError, NotFoundError
from ._client import CALL_TIMEOUT, call, connected
from ._group_follow import NOTICES, follow_group
from ._group_lines import format_group_message, format_notice
from ._output import (
    emit_json,
    emit_json_line,
    one_line,
    say,
    show_panel,
    show_qr,
    show_table,
)
from ._state import CliState, json_option, now_ms, pass_state, wide_option
from .files import add_files

if TYPE_CHECKING:
    from ..client import SyncClient

__all__ = ["groups", "format_group_message"]  # re-exported from ._group_lines

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS
_EVENT_HEX: Final = 64


@click.group()
def groups() -> None:
    """Interest groups (needs a running node: `p2pchat node run`).

    GROUP is a group id, or a unique name or id prefix among your groups. ACCOUNT is
    an account key or a contact's name. EVENT is a message id (the short form that
    `groups read` prints is enough). With --json, a group is {"group_id", "name",
    "kind", "tags", "status", "role", "members", "epoch", ...}; a message is
    {"event_id", "author", "device", "sent_at", "kind", "text", "reply_to", "edited",
    "deleted", "sealed", "reactions"} (keys in hex, times in ms since the Unix epoch;
    "ts" is the older, deprecated name of "sent_at").
    """


def _short(hex_id: str) -> str:
    return hex_id[:8]


def _names(client: SyncClient) -> dict[str, str]:
    """Account key -> how to show it: "me", a contact's label (README "Names"); others
    are named by :func:`._group_lines.who`."""
    found = client.call("contacts.list", timeout=CALL_TIMEOUT)
    names = {c["account"]: c["label"] for c in found}
    names[str(client.info.node["account"])] = "me"
    return names


def _event_of(client: SyncClient, group: str, text: str) -> str:
    """The full id of an event given in full or by a unique prefix of a recent one."""
    cleaned = text.strip().lower()
    if not cleaned or any(ch not in "0123456789abcdef" for ch in cleaned):
        raise ConfigError(f"{text!r} is not an event id (hex)")
    if len(cleaned) == _EVENT_HEX:
        return cleaned
    history = client.call("groups.history", {"group": group, "limit": 500}, timeout=CALL_TIMEOUT)
    view = client.call("groups.view", {"group": group}, timeout=CALL_TIMEOUT)
    known = {m["event_id"] for m in history} | {p["poll_id"] for p in view["polls"]}
    found: list[str] = sorted(e for e in known if e.startswith(cleaned))
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFoundError(f"no recent message in that group starts with {text!r}")
    raise ConfigError(f"{len(found)} messages start with {text!r}; give more of the id")


def _show_event(state: CliState, result: dict[str, Any], done: str) -> None:
    if state.json:
        emit_json(result)
    else:
        say(f"{done} (event {_short(result['event_id'])}).")


def _group_rows(found: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            g["name"],
            g["kind"],
            g["role"] or "",
            "" if g["members"] is None else str(g["members"]),
            g["status"],
            g["group_id"],
        )
        for g in found
    ]


@groups.command()
@click.argument("name")
@click.option("--tag", "tags", multiple=True, help="A topic tag people can find it by (repeat).")
@click.option("--private", "kind", flag_value="private", help="End-to-end encrypted, by invite.")
@click.option("--live", "kind", flag_value="live", help="Watch-together comments on media.")
@click.option("--about", help="A description.")
@click.option(
    "--join",
    type=click.Choice(["open", "invite", "approval"]),
    help="How people get in [default: open; invite for --private].",
)
@click.option("--slow", type=click.IntRange(0, 86_400), default=0, help="Seconds between posts.")
@json_option
@pass_state
def create(
    state: CliState,
    name: str,
    tags: tuple[str, ...],
    kind: str | None,
    about: str | None,
    join: str | None,
    slow: int,
) -> None:
    """Create a group named NAME (public unless --private or --live); you own it.

    \b
    JSON: {"group": group}
    """
    params: dict[str, Any] = {"name": name, "kind": kind or "public", "tags": list(tags)}
    params |= {k: v for k, v in (("about", about), ("join", join)) if v is not None}
    if slow:
        params["slow_seconds"] = slow
    group = call(state, "groups.create", params)
    if state.json:
        emit_json({"group": group})
    else:
        say(f"Created {group['kind']} group {one_line(group['name'])} ({group['group_id']}).")
        say("Invite people with `p2pchat groups invite GROUP`.")


@groups.command("list")
@wide_option
@json_option
@pass_state
def list_(state: CliState) -> None:
    """List your groups (also those you left) by name.

    \b
    JSON: {"groups": [group, ...]}
    """
    found = call(state, "groups.list")
    if state.json:
        emit_json({"groups": found})
        return
    show_table(
        None,
        ("Name", "Kind", "Role", "Members", "Status", "Group id"),
        _group_rows(found),
        empty="No groups yet. Create one with `p2pchat groups create NAME`, or search one.",
        no_wrap=("Group id",),
    )


@groups.command()
@click.argument("group")
@json_option
@pass_state
def info(state: CliState, group: str) -> None:
    """Show a group: kind, tags, rules, your role, members by role.

    \b
    JSON: {"group": group + {"about", "rules", "roles", "banned", "pending"}}
    """
    found = call(state, "groups.info", {"group": group})
    if state.json:
        emit_json({"group": found})
        return
    rules = found["rules"]
    roles = ", ".join(f"{n} {r}" for r, n in found["roles"].items() if n)
    rows = [
        ("Group id", found["group_id"]),
        ("Kind", found["kind"]),
        ("Tags", ", ".join(found["tags"]) or "-"),
        ("About", found["about"] or "-"),
        ("Your role", found["role"] or "-"),
        ("Members", f"{found['members']} ({roles})"),
        ("Joining", rules["join"]),
        ("Slow mode", f"{rules['slow_seconds']} s" if rules["slow_seconds"] else "off"),
        ("Banned", str(len(found["banned"]))),
        ("Epoch", str(found["epoch"])),
    ]
    show_panel(found["name"], rows)


@groups.command()
@click.argument("group")
@wide_option
@json_option
@pass_state
def members(state: CliState, group: str) -> None:
    """List a group's members, highest role first.

    \b
    JSON: {"members": [{"account", "role", "name", "label", "me"}, ...]}
    """
    found = call(state, "groups.members", {"group": group})
    if state.json:
        emit_json({"members": found})
        return
    rows = [("me" if m["me"] else m["label"], m["role"], m["account"]) for m in found]
    show_table(
        None, ("Name", "Role", "Account key"), rows, empty="No members.", no_wrap=("Account key",)
    )


@groups.command()
@click.argument("group")
@click.option(
    "--role",
    type=click.Choice(["admin", "moderator", "member", "viewer"]),
    default="member",
    show_default=True,
    help="The role the invite gives.",
)
@click.option("--uses", type=click.IntRange(1, 10_000), default=1, show_default=True)
@click.option(
    "--days", type=click.IntRange(1, 365), default=7, show_default=True, help="Valid for."
)
@click.option("--for", "account", metavar="ACCOUNT", help="Only this account may use it.")
@click.option("--qr", is_flag=True, help="Also draw the link as a QR code to scan.")
@json_option
@pass_state
def invite(
    state: CliState,
    group: str,
    role: str,
    uses: int,
    days: int,
    account: str | None,
    qr: bool,
) -> None:
    """Print an invite link for GROUP (send it to people over a DM, or let them scan it
    with --qr).

    \b
    JSON: {"group_id", "link"}
    """
    params: dict[str, Any] = {
        "group": group,
        "role": role,
        "uses": uses,
        "expires_in_ms": days * _DAY_MS,
    }
    if account is not None:
        params["account"] = account
    result = call(state, "groups.invite", params)
    if state.json:
        emit_json(result)
    else:
        click.echo(result["link"])  # on one line, never folded: people copy it whole
        if qr:
            show_qr(result["link"])


@groups.command()
@click.argument("invite")
@json_option
@pass_state
def join(state: CliState, invite: str) -> None:
    """Join with an INVITE link, or an open group by its id (from `groups search`).

    \b
    JSON: {"group": group}
    """
    group = call(state, "groups.join", {"invite": invite})
    if state.json:
        emit_json({"group": group})
    else:
        say(f"Joined {one_line(group['name'])} ({group['group_id']}) as {group['role']}.")


@groups.command()
@click.argument("group")
@json_option
@pass_state
def leave(state: CliState, group: str) -> None:
    """Leave GROUP (its history stays listed as left).

    \b
    JSON: {"group_id"}
    """
    result = call(state, "groups.leave", {"group": group})
    if state.json:
        emit_json(result)
    else:
        say(f"Left group {_short(result['group_id'])}.")


@groups.command()
@click.argument("group")
@click.argument("text", nargs=-1)
@click.option("--reply-to", metavar="EVENT", help="The message this answers.")
@click.option(
    "--file",
    "-f",
    "paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Attach a file (repeat for several); members fetch it from every holder.",
)
@json_option
@pass_state
def post(
    state: CliState, group: str, text: tuple[str, ...], reply_to: str | None, paths: tuple[str, ...]
) -> None:
    """Post TEXT in GROUP (words are joined with spaces), with --file attachments.

    \b
    JSON: {"group_id", "event_id"}
    """
    if not text and not paths:
        raise click.UsageError("give some TEXT, a --file, or both")
    with connected(state) as client:
        params: dict[str, Any] = {"group": group, "text": " ".join(text)}
        if reply_to is not None:
            params["reply_to"] = _event_of(client, group, reply_to)
        if paths:
            params["files"] = add_files(client, paths, show=not state.json and sys.stderr.isatty())
        result = client.call("groups.post", params, timeout=CALL_TIMEOUT)
    _show_event(state, result, "Posted")


@groups.command()
@click.argument("group")
@click.argument("event")
@click.argument("emoji")
@click.option("--off", is_flag=True, help="Take the reaction back.")
@json_option
@pass_state
def react(state: CliState, group: str, event: str, emoji: str, off: bool) -> None:
    """React to message EVENT with EMOJI.

    \b
    JSON: {"group_id", "event_id"}
    """
    with connected(state) as client:
        target = _event_of(client, group, event)
        params = {"group": group, "target": target, "emoji": emoji, "on": not off}
        result = client.call("groups.react", params, timeout=CALL_TIMEOUT)
    _show_event(state, result, "Reaction taken back" if off else "Reacted")


@groups.command()
@click.argument("group")
@click.argument("question")
@click.argument("options", nargs=-1, required=True)
@click.option("--multi", is_flag=True, help="Several choices allowed.")
@click.option("--hours", type=click.IntRange(1, 24 * 365), default=24, show_default=True)
@json_option
@pass_state
def poll(
    state: CliState, group: str, question: str, options: tuple[str, ...], multi: bool, hours: int
) -> None:
    """Start a poll: QUESTION with two or more OPTIONS, open for --hours.

    \b
    JSON: {"group_id", "event_id"}
    """
    params = {
        "group": group,
        "question": question,
        "options": list(options),
        "multi": multi,
        "deadline": now_ms() + hours * _HOUR_MS,
    }
    _show_event(state, call(state, "groups.poll", params), "Poll started")


@groups.command()
@click.argument("group")
@click.argument("poll_id", metavar="POLL")
@click.argument("choices", nargs=-1, type=click.IntRange(1, 16), required=True)
@json_option
@pass_state
def vote(state: CliState, group: str, poll_id: str, choices: tuple[int, ...]) -> None:
    """Vote in POLL for option number(s) CHOICES (counted from 1).

    \b
    JSON: {"group_id", "event_id"}
    """
    with connected(state) as client:
        params = {
            "group": group,
            "poll": _event_of(client, group, poll_id),
            "choices": [c - 1 for c in choices],
        }
        result = client.call("groups.vote", params, timeout=CALL_TIMEOUT)
    _show_event(state, result, "Voted")


def _moderate(state: CliState, method: str, params: dict[str, Any], done: str) -> None:
    result = call(state, method, params)
    if state.json:
        emit_json(result)
    else:
        say(f"{done} (event {_short(result['event_id'])}).")


@groups.command()
@click.argument("group")
@click.argument("account")
@click.option("--reason", help="Why (members see it).")
@json_option
@pass_state
def remove(state: CliState, group: str, account: str, reason: str | None) -> None:
    """Remove ACCOUNT from GROUP (a new invite lets them back).

    \b
    JSON: {"group_id", "event_id"}
    """
    params = {"group": group, "account": account}
    _moderate(state, "groups.remove", params | ({"reason": reason} if reason else {}), "Removed")


@groups.command()
@click.argument("group")
@click.argument("account")
@click.option("--reason", help="Why (members see it).")
@click.option(
    "--days", type=click.IntRange(1, 36_500), help="Only for this long [default: for good]."
)
@json_option
@pass_state
def ban(state: CliState, group: str, account: str, reason: str | None, days: int | None) -> None:
    """Ban ACCOUNT from GROUP.

    \b
    JSON: {"group_id", "event_id"}
    """
    params: dict[str, Any] = {"group": group, "account": account}
    if reason:
        params["reason"] = reason
    if days is not None:
        params["until"] = now_ms() + days * _DAY_MS
    _moderate(state, "groups.ban", params, "Banned")


@groups.command()
@click.argument("group")
@click.argument("account")
@click.option(
    "--role", type=click.Choice(["admin", "moderator", "member"]), required=True, help="New role."
)
@json_option
@pass_state
def promote(state: CliState, group: str, account: str, role: str) -> None:
    """Give ACCOUNT another role in GROUP (also to demote).

    \b
    JSON: {"group_id", "event_id"}
    """
    params = {"group": group, "account": account, "role": role}
    _moderate(state, "groups.set_role", params, f"Now {role}")


@groups.command()
@click.argument("tag")
@wide_option
@json_option
@pass_state
def search(state: CliState, tag: str) -> None:
    """Find public and live groups by topic TAG (no server: the DHT).

    \b
    JSON: {"groups": [{"group_id", "name", "kind", "joined", "members_seen"}, ...]}
    """
    found = call(state, "groups.search", {"tag": tag})
    if state.json:
        emit_json({"groups": found})
        return
    rows = [
        (
            g["name"],
            g["kind"],
            "yes" if g["joined"] else "",
            "" if g["members_seen"] is None else str(g["members_seen"]),
            g["group_id"],
        )
        for g in found
    ]
    show_table(
        None,
        ("Name", "Kind", "Joined", "Members", "Group id"),
        rows,
        empty=f"No groups found under {tag!r}.",
        no_wrap=("Group id",),
    )


@groups.command()
@click.argument("group")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--before", metavar="EVENT", help="Scroll back: messages before this one.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new messages until Ctrl-C.")
@click.option(
    "--count", type=click.IntRange(1), metavar="N", help="With --follow: stop after N messages."
)
@json_option
@pass_state
def read(
    state: CliState,
    group: str,
    limit: int,
    before: str | None,
    follow: bool,
    count: int | None,
) -> None:
    """Print GROUP's messages in the group's order (the same for every member).

    Each line shows the time, a short message id (for --reply-to, react), the author
    (you, a contact's name, or the start of their key) and reaction counts. Removals
    and bans stand in their place, with who did it and why. --follow also prints
    reactions, removals and bans as they happen.

    \b
    JSON: {"group_id", "messages": [message or notice, ...]} (a notice: "kind"
    member.remove or member.ban, "author", "account", "reason", "until"); with
    --follow, then one JSON object per line for each new event: {"event": {"type":
    "group.message" or "group.changed", ...}}.
    """
    with connected(state) as client:
        followed = ["group.message", "group.changed"]
        subscription = client.subscribe(followed) if follow else None
        try:
            group_id = client.call("groups.info", {"group": group}, timeout=CALL_TIMEOUT)[
                "group_id"
            ]
            params: dict[str, Any] = {"group": group_id, "limit": limit, "notices": True}
            if before is not None:
                params["before"] = _event_of(client, group_id, before)
            history = client.call("groups.history", params, timeout=CALL_TIMEOUT)
            names = _names(client)
            if state.json:
                first = {"group_id": group_id, "messages": history}
                (emit_json_line if follow else emit_json)(first)
            elif history:
                view = client.call("groups.view", {"group": group_id}, timeout=CALL_TIMEOUT)
                for message in history:
                    if message["kind"] in NOTICES:
                        say(format_notice(message, names))
                    else:
                        say(format_group_message(message, names, view, now_ms()))
            elif subscription is None:
                say("No messages yet.")
            if subscription is not None:
                if not state.json:
                    say("Waiting for new messages (Ctrl-C to stop)...")
                follow_group(client, subscription, group_id, names, as_json=state.json, count=count)
        finally:
            if subscription is not None:
                subscription.close()


from .groups_live import live_post, live_read, media_hash_command  # noqa: E402 - sibling
from .groups_share import share  # noqa: E402 - sibling

for _live_command in (live_post, live_read, media_hash_command, share):
    groups.add_command(_live_command)
