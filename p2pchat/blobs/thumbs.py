"""Inline thumbnails of images (optional: needs Pillow, ``pip install p2pchat[images]``).

A thumbnail is a JPEG of at most :data:`MAX_THUMB_BYTES` bytes and 160 pixels on its
longest side, made locally from the image being sent, so a message or a share card
shows something before the full image is fetched. Without Pillow (or for a file Pillow
cannot read) there is simply no thumbnail.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from p2pchat.protocol.content import MAX_THUMB_BYTES

__all__ = ["available", "make_thumbnail", "MAX_EDGE"]

logger = logging.getLogger(__name__)
MAX_EDGE = 160
#: Pillow refuses images above this many pixels before decoding them (decompression bombs).
_MAX_PIXELS = 40_000_000


def available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def make_thumbnail(path: Path) -> tuple[bytes, int, int] | None:
    """``(jpeg, width, height)`` of the full image, or ``None``. Blocking: run in a thread."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        return None
    Image.MAX_IMAGE_PIXELS = _MAX_PIXELS
    try:
        with Image.open(path) as image:
            width, height = image.size
            image.thumbnail((MAX_EDGE, MAX_EDGE))
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        logger.info("no thumbnail for %s: %s", path.name, type(exc).__name__)
        return None
    edge = MAX_EDGE
    for quality in (70, 55, 40, 30, 20):
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=quality, optimize=True)
        if out.tell() <= MAX_THUMB_BYTES:
            return out.getvalue(), width, height
        if quality == 40:
            edge //= 2
            rgb.thumbnail((edge, edge))
    return None
