"""p2pchat_crypto: the end-to-end encryption core of p2pchat.

No I/O: no sockets, files, clocks or global randomness. Time (``now``, integer
milliseconds since the Unix epoch) and randomness (``rng(n) -> bytes``) are parameters.
See ``protocol-spec/crypto.md`` for the exact formats.
"""

from __future__ import annotations

from .errors import (
    AuthenticationError,
    CryptoError,
    DecodeError,
    DecryptionError,
    DuplicateMessageError,
    ExpiredError,
    GapTooLargeError,
    PickleError,
    ReplayError,
    SignatureError,
    StaleError,
    UnknownSessionError,
    VerificationError,
)
from .sealed import Rng

__all__ = [
    "Rng",
    "CryptoError",
    "DecodeError",
    "VerificationError",
    "SignatureError",
    "ExpiredError",
    "StaleError",
    "DecryptionError",
    "AuthenticationError",
    "DuplicateMessageError",
    "GapTooLargeError",
    "UnknownSessionError",
    "ReplayError",
    "PickleError",
]
