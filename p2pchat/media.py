"""What names a media file in live groups: its BLAKE2b-256 hash (wire.md section 7).

MEDIA may be given as that hash (64 hex digits), as a file (hashed: everyone with the
same file meets at the same hash), or as an http(s) URL (named by the hash of the URL's
text, so everyone playing the same URL meets there; nothing is downloaded). Shared by
the CLI (``groups live-post``, ``media-hash``) and the RPC method ``groups.media_hash``
(for clients that cannot hash, such as the Node.js client).
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["Media", "media_of"]

_HEX = frozenset("0123456789abcdef")
_URL_MIME = "text/uri-list"


@dataclass(frozen=True)
class Media:
    """What names a media file: its hash, type, size and (for a URL) where it is."""

    hash: str
    mime: str
    size: int
    url: str | None = None


def media_of(text: str) -> Media:
    """MEDIA as a hash, a file (hashed) or an http(s) URL (its text hashed)."""
    cleaned = text.strip()
    if len(cleaned) == 64 and set(cleaned.lower()) <= _HEX:
        return Media(cleaned.lower(), "application/octet-stream", 0)
    if cleaned.startswith(("http://", "https://")):
        digest = hashlib.blake2b(cleaned.encode(), digest_size=32).hexdigest()
        return Media(digest, _URL_MIME, 0, cleaned)
    path = Path(cleaned).expanduser()
    if not path.is_file():
        raise ConfigError(f"{text!r} is not a media file, an http(s) URL or a 64-hex media hash")
    hasher = hashlib.blake2b(digest_size=32)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Media(hasher.hexdigest(), mime, path.stat().st_size)
