"""Ed25519 verifications shared by every simulated node of one process.

A simulated run is a thousand real nodes in one process, each verifying the same join
events, posts and envelopes (a 1,000-node seed verified each signature ~1,000 times:
~16 % of the run). Verifying is a pure function of (key, message, signature), so a
signature that verified once for one node verifies for all: this memo answers those
from memory. Only successes are remembered, keyed by the key, the signature and a
digest of the message, so anything forged, altered or signed by another key still goes
through libsodium and fails exactly as before: the properties checked are unchanged.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from nacl.signing import VerifyKey

from p2pchat.protocol import signing

__all__ = ["shared_verifications"]

#: Remembered successes (~100 B each).
_SIZE = 1 << 18


class _MemoVerifyKey:
    """The part of :class:`nacl.signing.VerifyKey` that ``signing.verify_signature`` uses."""

    ok: ClassVar[OrderedDict[tuple[bytes, bytes, bytes], None]] = OrderedDict()
    hits: ClassVar[int] = 0

    def __init__(self, key: bytes) -> None:
        self._key = key

    def verify(self, message: bytes, signature: bytes) -> bytes:
        memo = (self._key, bytes(signature), hashlib.blake2b(message, digest_size=32).digest())
        if memo in self.ok:
            type(self).hits += 1
            return message
        VerifyKey(self._key).verify(message, signature)  # raises when it does not verify
        self.ok[memo] = None
        if len(self.ok) > _SIZE:
            self.ok.popitem(last=False)
        return message


@contextmanager
def shared_verifications() -> Iterator[type[_MemoVerifyKey]]:
    """Within the block, ``signing.verify_signature`` remembers what verified."""
    names = vars(signing)  # the module global that verify_signature looks up
    saved = names["VerifyKey"]
    names["VerifyKey"] = _MemoVerifyKey
    _MemoVerifyKey.hits = 0
    try:
        yield _MemoVerifyKey
    finally:
        names["VerifyKey"] = saved
        _MemoVerifyKey.ok.clear()
