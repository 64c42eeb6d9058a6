"""p2pchat: a peer-to-peer, end-to-end encrypted messenger with an open wire protocol."""

from __future__ import annotations

from .errors import P2PChatError

__version__ = "0.1.0"

__all__ = ["P2PChatError", "__version__"]
