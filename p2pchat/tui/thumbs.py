"""An image's inline thumbnail as text: half-block characters in true colour (no sixel).

Optional, like thumbnails themselves: needs Pillow (``p2pchat[images]``); without it, or
for a thumbnail it cannot read, the caller shows a text placeholder. The thumbnail is a
peer's bytes: only a small JPEG (at most ``MAX_THUMB_BYTES``, 160 px on its longest side)
is decoded, and only colours ever reach the terminal.
"""

from __future__ import annotations

import io

from rich.style import Style
from rich.text import Text

from p2pchat.protocol.content import MAX_THUMB_BYTES

__all__ = ["thumbnail_text"]

#: The most pixels a thumbnail may claim before it is decoded (160 x 160 and a margin).
_MAX_PIXELS = 200 * 200


def thumbnail_text(data: bytes, *, width: int = 16) -> Text | None:
    """``data`` (a JPEG thumbnail) as ``width`` columns of "▀" cells: each cell is two
    pixels, the upper one in the foreground colour, the lower one in the background."""
    if not data or len(data) > MAX_THUMB_BYTES:
        return None
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            w, h = image.size
            if w < 1 or h < 1 or w * h > _MAX_PIXELS or image.format != "JPEG":
                return None
            rows = max(2, round(width * h / w / 2) * 2)  # two pixels per cell, vertically
            small = image.convert("RGB").resize((width, rows))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    pixels = small.load()
    assert pixels is not None
    out = Text()
    for y in range(0, rows, 2):
        if y:
            out.append("\n")
        for x in range(width):
            top, bottom = pixels[x, y], pixels[x, y + 1]
            out.append(
                "\u2580",
                Style(color=f"rgb{tuple(top)}", bgcolor=f"rgb{tuple(bottom)}"),  # type: ignore[arg-type]
            )
    return out
