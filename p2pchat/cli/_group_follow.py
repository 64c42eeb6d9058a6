"""``groups read --follow``: new messages, reactions, removals and bans as they happen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ._client import CALL_TIMEOUT
from ._group_lines import format_group_message, format_notice, format_reaction, person
from ._output import emit_json_line, say, warn
from ._state import now_ms

if TYPE_CHECKING:
    from ..client import SyncClient, SyncSubscription

__all__ = ["NOTICES", "follow_group"]

#: Kinds shown as lines (votes and edits change earlier lines; reactions get their own).
_SHOWN: Final = frozenset({"post", "reply", "share", "poll", "buy"})
#: Removals and bans, listed among the messages (``groups.history`` with ``notices``).
NOTICES: Final = frozenset({"member.remove", "member.ban"})


def follow_group(
    client: SyncClient,
    subscription: SyncSubscription,
    group_id: str,
    names: dict[str, str],
    *,
    as_json: bool,
    count: int | None,
) -> None:
    """Print the group's new messages, reactions, removals and bans until Ctrl-C (or
    ``count`` of them)."""
    from ..client import Gap

    seen = 0
    for item in subscription:
        if isinstance(item, Gap):
            warn("some events were missed; run `p2pchat groups read` again to see everything")
            continue
        data = item.data
        if data.get("group_id") != group_id:
            continue
        if item.type == "group.changed":
            if data.get("change") not in ("left", "banned"):
                continue
            _follow_notice(client, group_id, data, names, as_json=as_json)
        elif data.get("kind") == "react":
            if as_json:
                emit_json_line({"event": data})
            else:
                say(format_reaction(data, names))
        elif data.get("kind") not in _SHOWN:
            continue
        elif as_json:
            emit_json_line({"event": data})
        else:
            shown = {"deleted": False, "sealed": False, "reply_to": None, **data}
            view = None
            if data.get("kind") in ("poll", "buy"):
                view = client.call("groups.view", {"group": group_id}, timeout=CALL_TIMEOUT)
            say(format_group_message(shown, names, view, now_ms()))
        seen += 1
        if count is not None and seen >= count:
            return


def _follow_notice(
    client: SyncClient,
    group_id: str,
    change: dict[str, Any],
    names: dict[str, str],
    *,
    as_json: bool,
) -> None:
    """A member left: the removal or ban behind it (with its reason), or that they left."""
    history = client.call(
        "groups.history", {"group": group_id, "limit": 50, "notices": True}, timeout=CALL_TIMEOUT
    )
    notices = [m for m in history if m["kind"] in NOTICES and m["account"] == change["account"]]
    if as_json:
        emit_json_line({"event": {**change, "notice": notices[-1] if notices else None}})
    elif notices:
        say(format_notice(notices[-1], names))
    else:
        say(f"  — {person(change['account'], names)} left the group")
