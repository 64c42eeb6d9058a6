"""``p2pchat groups live-post`` / ``live-read`` / ``media-hash``: watch-together comments.

Live comments are anchored to a position in a media file, named by its BLAKE2b-256 hash
(the ``MediaRef`` of wire.md section 7). MEDIA may be given as that hash (64 hex
digits), as a local file (hashed here: everyone with the same file meets at the same
hash), or as an http(s) URL (named by the hash of the URL's text, so everyone playing
the same URL meets there; nothing is downloaded). ``media-hash`` prints the hash.

Live comments are gossiped only: a node holds those made while it was online. So by
default ``live-read`` first asks members for the range (``groups.live_fetch``), then
prints what the node holds (``groups.live_comments``), in timeline order: a late joiner
sees the comments of the minutes it plays.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import ConfigError
from ..media import Media, media_of
from ._client import CALL_TIMEOUT, call, connected
from ._output import emit_json, message_body, say
from ._state import CliState, json_option, pass_state

__all__ = ["live_read", "live_post", "media_hash_command", "format_offset", "Media", "media_of"]


def parse_offset(text: str) -> int:
    """``[h:]mm:ss`` or seconds (``754``, ``12.5``) as milliseconds."""
    parts = text.strip().split(":")
    try:
        if len(parts) == 1:
            seconds = float(parts[0])
        elif len(parts) in (2, 3):
            numbers = [int(p) for p in parts[:-1]] + [float(parts[-1])]
            if any(n < 0 for n in numbers) or any(n >= 60 for n in numbers[1:]):
                raise ValueError
            seconds = 0.0
            for number in numbers:
                seconds = seconds * 60 + number
        else:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{text!r} is not a position: use mm:ss, h:mm:ss or seconds") from None
    if seconds < 0:
        raise ConfigError("a position cannot be negative")
    return round(seconds * 1000)


_MS_PER_MIN = 60_000
#: A day of media; enough for any film, and the node's bound on offsets is far higher.
_DEFAULT_END_MS = 24 * 60 * _MS_PER_MIN


def format_offset(ms: int) -> str:
    """A timeline position as people read it: ``[h:]mm:ss``."""
    seconds, _ = divmod(ms, 1000)
    minutes, sec = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours}:{mins:02d}:{sec:02d}" if hours else f"{mins:02d}:{sec:02d}"


@click.command("media-hash")
@click.argument("media")
@json_option
@pass_state
def media_hash_command(state: CliState, media: str) -> None:
    """Print the hash that names MEDIA (a file, an http(s) URL) in live groups.

    \b
    JSON: {"media_hash", "mime", "size", "url"}
    """
    found = media_of(media)
    if state.json:
        emit_json(
            {"media_hash": found.hash, "mime": found.mime, "size": found.size, "url": found.url}
        )
    else:
        click.echo(found.hash)


@click.command("live-post")
@click.argument("group")
@click.argument("words", nargs=-1, required=True, metavar="[MEDIA] [POSITION] TEXT...")
@click.option("--media", "media_opt", metavar="MEDIA", help="The media (instead of MEDIA).")
@click.option("--at", "at_opt", metavar="POSITION", help="The position (instead of POSITION).")
@json_option
@pass_state
def live_post(
    state: CliState,
    group: str,
    words: tuple[str, ...],
    media_opt: str | None,
    at_opt: str | None,
) -> None:
    """Comment TEXT at POSITION (mm:ss, h:mm:ss or seconds) of MEDIA in live GROUP.

    MEDIA is a local file (named by its hash), an http(s) URL or a media hash (see
    `groups media-hash`); it may be given as `--media FILE`, and POSITION as `--at`.

    \b
    JSON: {"group_id", "event_id"}
    """
    rest = list(words)
    media = media_opt if media_opt is not None else rest.pop(0)
    at = at_opt if at_opt is not None else (rest.pop(0) if rest else None)
    if at is None or not rest:
        raise click.UsageError("give MEDIA, POSITION and the comment's TEXT")
    found = media_of(media)
    params: dict[str, Any] = {
        "group": group,
        "media_hash": found.hash,
        "mime": found.mime,
        "size": found.size,
        "offset_ms": parse_offset(at),
        "text": " ".join(rest),
    }
    if found.url is not None:
        params["url"] = found.url
    result = call(state, "groups.live", params)
    if state.json:
        emit_json(result)
    else:
        say(f"Commented at {format_offset(params['offset_ms'])} (event {result['event_id'][:8]}).")


@click.command("live-read")
@click.argument("group")
@click.argument("media")
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
    state: CliState, group: str, media: str, start: int, end: int, no_fetch: bool
) -> None:
    """Print the live comments of GROUP on MEDIA (a file, an http(s) URL or a media hash)
    between --from and --to, by timeline offset; first fetches from members those made
    before you joined.

    \b
    JSON: {"fetched": int (null with --no-fetch), "comments": [{"event_id", "author",
    "sent_at", "offset", "text", "color"}, ...]} ("ts": deprecated name of "sent_at")
    """
    if end <= start:
        raise click.BadParameter("--to must be after --from", param_hint="--to")
    span: dict[str, Any] = {
        "group": group,
        "media_hash": media_of(media).hash,
        "start_ms": start,
        "end_ms": end,
    }
    with connected(state) as client:
        fetched = None
        if not no_fetch:
            fetched = client.call("groups.live_fetch", span, timeout=CALL_TIMEOUT)
        comments = client.call("groups.live_comments", span, timeout=CALL_TIMEOUT)
        me = str(client.info.node["account"])
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
