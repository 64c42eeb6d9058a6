"""p2pchat_crypto: the end-to-end encryption core of p2pchat.

No I/O: no sockets, files, clocks or global randomness. Time (``now``, integer
milliseconds since the Unix epoch) and randomness (``rng(n) -> bytes``) are parameters.
See ``protocol-spec/crypto.md`` and ``protocol-spec/crypto-group.md`` for the formats.

* identities: :class:`Account`, :class:`Device`, :class:`DeviceCertificate`,
  :class:`PublicIdentity`, :func:`fingerprint_of`, :func:`safety_number`;
* pairwise sessions: :class:`PrekeyBundle`, :class:`SignedPrekey`, :class:`Session`
  (X3DH + Double Ratchet with header encryption), :class:`ReplayCache`;
* groups: :class:`GroupSession`, :class:`InboundGroupSession`, :class:`GroupKeyring`;
* every stateful object pickles to versioned bytes (``to_bytes``/``from_bytes``) and
  seals under a key (:mod:`p2pchat_crypto.sealed`).
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
from .group import GroupKeyring, GroupSession, InboundGroupSession
from .identity import (
    Account,
    Device,
    DeviceCertificate,
    PublicIdentity,
    fingerprint_of,
    safety_number,
    verify_signature,
)
from .prekeys import PrekeyBundle, SignedPrekey
from .ratchet import Session, is_initial_message
from .replay import ReplayCache
from .sealed import Rng
from .x3dh import InitialMessage

__all__ = [
    "Rng",
    # identities
    "Account",
    "Device",
    "DeviceCertificate",
    "PublicIdentity",
    "fingerprint_of",
    "safety_number",
    "verify_signature",
    # pairwise
    "PrekeyBundle",
    "SignedPrekey",
    "InitialMessage",
    "Session",
    "is_initial_message",
    "ReplayCache",
    # groups
    "GroupSession",
    "InboundGroupSession",
    "GroupKeyring",
    # errors
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
