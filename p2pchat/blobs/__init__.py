"""Attachments and media: encrypted blobs sealed, stored, served and fetched.

``Blobs`` (``service.py``) is what the node uses: seal a file into the blob store and
return its ``media-ref``; fetch a blob from several holders at once (``transfer.py``,
around the sans-IO :class:`p2pchat.protocol.blob_fetch.Download`); serve what we hold
on ``/p2pchat/blob/1.0.0`` under a per-peer rate limit (``serve.py``); make image
thumbnails when Pillow is installed (``thumbs.py``); hold blobs of mail left at a
mailbox, and offer ours to a recipient's mailboxes (``mailbox.py``).
Formats: protocol-spec/blobs.md.
"""

from __future__ import annotations

from .service import Blobs

__all__ = ["Blobs"]
