"""Making peer-controlled text inert before it reaches a terminal.

Anything a peer controls (message text, group and display names, reasons, poll options)
may carry bytes a terminal obeys: ``ESC[2J`` clears the screen, OSC sequences set the
window title or write the clipboard, C1 controls (``\\x9b`` is a one-byte CSI) do the
same on some terminals, and bidirectional overrides (U+202E) make text read differently
from what it is. :func:`terminal_safe` shows every such character as a visible escape
(``\\x1b``, ``\\u202e``), so nothing is hidden and nothing is executed; newline and tab
stay (unless ``single_line``). Pure and dependency-free: the CLI and the TUI share it.
JSON output is never passed through it (it stays exact); :func:`json_safe` escapes the
same characters the JSON way (``\\u001b``), which keeps the value exact.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = [
    "size_text",
    "terminal_safe",
    "json_safe",
    "is_unsafe",
    "person_label",
    "CLAIMED_MARK",
    "UNVERIFIED_MARK",
]

#: Format characters people need: joiners in emoji sequences and in many scripts.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})
#: Line and paragraph separators move the cursor like a newline.
_SEPARATORS = frozenset({"Zl", "Zp"})


@lru_cache(maxsize=4096)
def is_unsafe(char: str) -> bool:
    """Whether one character could steer a terminal or hide text (newline/tab aside)."""
    if char in "\n\t":
        return False
    category = unicodedata.category(char)
    if category in ("Cc", "Cs") or category in _SEPARATORS:
        return True  # C0, DEL, C1; lone surrogates; U+2028/U+2029
    return category == "Cf" and char not in _ALLOWED_FORMAT  # bidi overrides, ZW space...


#: Every character that might be unsafe (is_unsafe decides): anything but printable ASCII.
_CANDIDATES = re.compile("[^\x20-\x7e]")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal_safe(text: str, *, single_line: bool = False) -> str:
    """``text`` with every control and format character shown as a visible escape.

    Newline and tab are kept unless ``single_line`` (for names and other one-line
    fields, where a newline could forge a line of output); everything else in
    Unicode categories Cc, Cf (except the zero-width joiners), Cs, Zl and Zp becomes
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``.
    """

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        if char in "\n\t" and not single_line:
            return char
        return _escape(char) if is_unsafe(char) or char in "\n\t" else char

    return _CANDIDATES.sub(replace, text)


def json_safe(encoded: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with unsafe characters escaped
    as ``\\uNNNN``: the same value for a parser, inert on a terminal."""

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        if not is_unsafe(char):
            return char
        code = ord(char)
        if code < 0x10000:
            return f"\\u{code:04x}"
        code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells astral characters
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"

    return _CANDIDATES.sub(replace, encoded)


#: Marks of a name on screen (:func:`person_label`): a name they gave themselves, and a
#: contact whose safety number has not been compared yet.
CLAIMED_MARK = "~"
UNVERIFIED_MARK = "?"


def person_label(*, name: str | None, claimed: str | None, verified: bool, fallback: str) -> str:
    """How a person is named on screen: one rule for the CLI, the TUI, RPC results and
    notifications (README "Names").

    * ``Alice``: your contact, named by you, safety number verified;
    * ``Alice?``: your contact, named by you, not verified yet;
    * ``~Alice``: only the name they gave themselves (sent with their messages): a claim;
    * ``fallback`` (a fingerprint prefix) when neither is known.

    The result is exact (JSON stays exact): pass it through :func:`terminal_safe` before
    printing it.
    """
    if name:
        return name if verified else name + UNVERIFIED_MARK
    if claimed:
        return CLAIMED_MARK + claimed
    return fallback


def size_text(size: int) -> str:
    """A byte count as people read it: ``532 B``, ``12.3 KB``, ``4.0 MB`` (powers of
    1000, as file managers show them); shared by the CLI and the TUI."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover
