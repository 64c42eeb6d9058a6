"""The simulator's shared verifications answer only what verified before: forged or
altered signatures still fail, each time."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from p2pchat.errors import WireError
from p2pchat.protocol.signing import verify_signature
from tests.conftest import DeterministicRng

from .verify_memo import shared_verifications


def test_a_verified_signature_is_remembered_and_a_forgery_still_fails() -> None:
    key = SigningKey(DeterministicRng("memo")(32))
    other = SigningKey(DeterministicRng("other")(32))
    public = bytes(key.verify_key)
    sig = key.sign(b"event").signature
    with shared_verifications() as memo:
        verify_signature(b"event", sig, public)
        verify_signature(b"event", sig, public)
        assert memo.hits == 1
        for message, signature, signer in (
            (b"evenT", sig, public),  # altered message
            (b"event", other.sign(b"event").signature, public),  # another key signed
            (b"event", sig, bytes(other.verify_key)),  # claimed by another key
        ):
            for _ in range(2):  # a failure is never remembered
                with pytest.raises(WireError):
                    verify_signature(message, signature, signer)
        assert memo.hits == 1
    with pytest.raises(WireError):  # the block restores the real check
        verify_signature(b"evenT", sig, public)
