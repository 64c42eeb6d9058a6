"""Peer-controlled text made inert for Textual: a thin wrapper over :mod:`p2pchat.text`.

Everything a peer writes (messages, names, group names, poll options, links) goes
through :func:`p2pchat.text.terminal_safe` (the CLI's sanitiser: controls, C1, bidi and
other format characters shown as visible escapes such as ``\\x1b``), and is shown as a
plain :class:`rich.text.Text`, never parsed as markup. What this adds for the screens:
``limit`` for names in narrow columns, tabs as spaces, and the ``Text`` wrapper.
"""

from __future__ import annotations

from rich.text import Text

from p2pchat.text import terminal_safe

__all__ = ["inert", "peer_text"]


def inert(text: str, *, multiline: bool = False, limit: int | None = None) -> str:
    """``terminal_safe`` text; newlines kept only with ``multiline`` (``\\r\\n`` counts as
    one), tabs as four spaces; cut to ``limit`` characters (ending in ``…``)."""
    if multiline:
        text = text.replace("\r\n", "\n")
    result = terminal_safe(text, single_line=not multiline).replace("\t", "    ")
    if limit is not None and len(result) > limit:
        result = result[: max(limit - 1, 0)] + "\u2026"
    return result


def peer_text(
    text: str, style: str = "", *, multiline: bool = False, limit: int | None = None
) -> Text:
    """:func:`inert` text as a rich ``Text`` (never markup), in ``style``."""
    return Text(inert(text, multiline=multiline, limit=limit), style=style, end="")
