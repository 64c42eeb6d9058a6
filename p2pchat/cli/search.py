"""``p2pchat search``: find messages in your DMs and groups by their words."""

from __future__ import annotations

from datetime import datetime

import click

from ._client import call
from ._output import emit_json, one_line, say
from ._state import CliState, json_option, pass_state

__all__ = ["search"]


@click.command()
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@json_option
@pass_state
def search(state: CliState, words: tuple[str, ...], limit: int) -> None:
    """Find messages (DMs and groups) whose text has every one of WORDS, newest first.

    The node reads your messages to search them: nothing is indexed on disk, because
    your store is encrypted at rest (a plain index would be a copy of every word).

    \b
    JSON: {"hits": [{"kind", "conversation_id", "group_id", "title", "id", "author",
           "label", "sent_at", "text"}, ...], "total", "scanned"}
    """
    found = call(state, "messages.search", {"query": " ".join(words), "limit": limit})
    if state.json:
        emit_json(found)
        return
    for hit in found["hits"]:
        when = datetime.fromtimestamp(hit["sent_at"] / 1000).strftime("%Y-%m-%d %H:%M")
        where = f"#{hit['title']}" if hit["kind"] == "group" else f"dm {hit['title']}"
        say(f"{when}  {one_line(where)}  {one_line(hit['label'])}: {one_line(hit['text'])}")
    shown, total = len(found["hits"]), found["total"]
    more = f" (the newest {shown} shown: --limit)" if total > shown else ""
    say(f"{total} found in {found['scanned']} messages{more}.")
