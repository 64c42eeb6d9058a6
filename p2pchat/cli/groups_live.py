"""``p2pchat groups live-read``: the live comments of the part of a video you play.

Live comments are gossiped only: a node holds those made while it was online. So by
default the command first asks members for the range (``groups.live_fetch``), then
prints what the node holds (``groups.live_comments``), in timeline order: a late joiner
sees the comments of the minutes it plays.
"""

from __future__ import annotations

from typing import Any

import click

from ._client import CALL_TIMEOUT, connected
from ._output import emit_json, message_body, say
from ._state import CliState, json_option, pass_state

__all__ = ["live_read", "format_offset"]

_MS_PER_MIN = 60_000
#: A day of media; enough for any film, and the node's bound on offsets is far higher.
_DEFAULT_END_MS = 24 * 60 * _MS_PER_MIN


def format_offset(ms: int) -> str:
    """A timeline position as people read it: ``[h:]mm:ss``."""
    seconds, _ = divmod(ms, 1000)
    minutes, sec = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours}:{mins:02d}:{sec:02d}" if hours else f"{mins:02d}:{sec:02d}"


@click.command("live-read")
@click.argument("group")
@click.argument("media_hash")
@click.option(
    "--from", "start", type=click.IntRange(0), default=0, show_default=True, help="Start, ms."
)
@click.option(
    "--to",
    "end",
    type=click.IntRange(1),
    default=_DEFAULT_END_MS,
    help="End (exclusive), ms  [default: 24 h].",
)
@click.option("--no-fetch", is_flag=True, help="Only what this node holds; ask no member.")
@json_option
@pass_state
def live_read(
    state: CliState, group: str, media_hash: str, start: int, end: int, no_fetch: bool
) -> None:
    """Print the live comments of GROUP on the media MEDIA_HASH (hex) between --from and
    --to, by timeline offset; first fetches from members those made before you joined.

    \b
    JSON: {"fetched": int (null with --no-fetch), "comments": [{"event_id", "author",
    "ts", "offset", "text", "color"}, ...]}
    """
    if end <= start:
        raise click.BadParameter("--to must be after --from", param_hint="--to")
    span: dict[str, Any] = {
        "group": group,
        "media_hash": media_hash,
        "start_ms": start,
        "end_ms": end,
    }
    with connected(state) as client:
        fetched = None
        if not no_fetch:
            fetched = client.call("groups.live_fetch", span, timeout=CALL_TIMEOUT)
        comments = client.call("groups.live_comments", span, timeout=CALL_TIMEOUT)
        me = str(client.info.node["account_key"])
    if state.json:
        emit_json(
            {"fetched": None if fetched is None else fetched["received"], "comments": comments}
        )
        return
    if not comments:
        say("No comments on that part of the timeline.")
        return
    for c in comments:
        who = "me" if c["author"] == me else c["author"][:8]
        say(f"{format_offset(c['offset'])}  {who}: {message_body(c['text'])}")
