"""QR codes drawn with text, for terminals: invite links and contact links to scan.

The code itself comes from ``segno`` (encoding, error correction and masking are not
something to write by hand); this module only draws its modules with half blocks, two
modules per character cell, so a code of N modules takes N columns and about N/2 rows.
Dark modules are drawn (``█``, ``▀``, ``▄``), light ones are spaces: show the text dark on
light (the CLI and the TUI set ``black on white``), which scans on dark and light
terminal themes alike.
"""

from __future__ import annotations

from typing import Final

__all__ = ["qr_text", "qr_modules", "QR_STYLE", "CONTACT_PREFIX", "contact_link"]

#: How to show :func:`qr_text` (a Rich style): dark modules on a light ground.
QR_STYLE: Final = "black on white"
#: A contact link: this prefix and an account key in hex (``p2pchat contacts add`` takes it).
CONTACT_PREFIX: Final = "p2pchat-contact:"
#: Light modules around the code; scanners want a quiet zone (4 is the standard's, 2 reads
#: well on a screen and keeps the code within 80x24 for an invite link).
_BORDER: Final = 2
_CELLS: Final = {(False, False): " ", (True, False): "\u2580", (False, True): "\u2584"}


def contact_link(account_hex: str) -> str:
    """The link that shares a contact: what to scan or paste into ``contacts add``."""
    return CONTACT_PREFIX + account_hex


def qr_modules(data: str) -> list[list[bool]]:
    """The modules of ``data``'s QR code (True: dark), with the quiet zone, row by row.

    Error correction level L is the smallest code; segno raises it for free when the
    data fits the same version anyway (``boost_error``).
    """
    import segno  # only when a code is drawn (the node imports this module for its prefix)

    code = segno.make(data, error="l", micro=False)
    return [[bool(m) for m in row] for row in code.matrix_iter(scale=1, border=_BORDER)]


def qr_text(data: str) -> str:
    """``data`` as a QR code in half blocks: one line per two rows of modules."""
    rows = qr_modules(data)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = []
    for top, bottom in zip(rows[::2], rows[1::2], strict=True):
        lines.append(
            "".join(_CELLS.get((t, b), "\u2588") for t, b in zip(top, bottom, strict=True))
        )
    return "\n".join(lines)
