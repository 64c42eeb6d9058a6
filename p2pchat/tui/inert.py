"""Peer-controlled text made inert before it reaches the terminal (a tiny pure function).

Everything a peer writes (messages, names, group names, poll options, links) goes
through :func:`inert` and is shown as a plain :class:`rich.text.Text`, never parsed as
markup: no escape sequence can move the cursor, retitle the window or change colours,
and no bidi override can make text read in another order than it is stored.

Control characters become visible stand-ins: C0 controls their Unicode "control
picture" (ESC shows as ␛), DEL ␡, and C1 controls, bidi controls and other format
characters ``⟨U+XXXX⟩``. A newline is kept where the caller allows it (message bodies),
a tab becomes spaces.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

__all__ = ["inert", "peer_text"]

_C0_PICTURES = {c: chr(0x2400 + c) for c in range(0x20)}
_DEL = "\u2421"
#: Zero-width joiner: joins emoji (👩‍💻); it cannot reorder or hide text.
_HARMLESS = frozenset("\u200d")


def _visible(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return _C0_PICTURES[code]
    if code == 0x7F:
        return _DEL
    return f"\u27e8U+{code:04X}\u27e9"


def inert(text: str, *, multiline: bool = False, limit: int | None = None) -> str:
    """``text`` with every control and format character replaced by a visible stand-in.

    With ``multiline`` newlines are kept (``\\r\\n`` and lone ``\\r`` count as one);
    otherwise they show as ``⏎``. ``limit`` cuts the result to that many characters
    (with ``…``), for names in narrow columns.
    """
    if multiline:
        text = text.replace("\r\n", "\n")
    out: list[str] = []
    for ch in text:
        if ch == "\n":
            out.append("\n" if multiline else "\u23ce")
        elif ch == "\t":
            out.append("    ")
        elif ch.isprintable() or ch in _HARMLESS or unicodedata.category(ch) == "Zs":
            out.append(ch)
        else:  # Cc (C0, DEL, C1), Cf (bidi, zero-width), Co, Cs, Cn, Zl, Zp
            out.append(_visible(ch))
    result = "".join(out)
    if limit is not None and len(result) > limit:
        result = result[: max(limit - 1, 0)] + "\u2026"
    return result


def peer_text(
    text: str, style: str = "", *, multiline: bool = False, limit: int | None = None
) -> Text:
    """:func:`inert` text as a rich ``Text`` (never markup), in ``style``."""
    return Text(inert(text, multiline=multiline, limit=limit), style=style, end="")
