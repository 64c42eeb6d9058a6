"""A device's revocation by its account (protocol-spec/devices.md section 2): a map signed
alone, so that it can be copied into other records (a device list, a group's log) and
verified there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import Bytes, Struct, UInt, wire
from .signing import AnySigner, public_key_of, sign_map, signed_bytes, verify_signature

__all__ = ["Revocation"]

_KEY = Bytes(32)


@dataclass(frozen=True, kw_only=True)
class Revocation(Struct):
    """A device revoked by its account (devices.md section 2), signed alone so that it can
    be copied elsewhere (context ``revocation``)."""

    account: bytes = wire("acct", _KEY, "the account key")
    device: bytes = wire("dev", _KEY, "the revoked device key")
    at: int = wire("at", UInt(), "when it was revoked, ms since the epoch")
    sig: bytes = wire("sig", Bytes(64), "Ed25519 by acct, context revocation")

    @classmethod
    def sign(cls, *, device: bytes, at: int, signing_key: AnySigner) -> Revocation:
        """A revocation of ``device`` by the account whose key signs."""
        value: dict[str, Any] = {"acct": public_key_of(signing_key), "dev": device, "at": at}
        value["sig"] = sign_map("revocation", value, signing_key)
        return cls.from_value(value)

    def verify(self) -> None:
        """Raise ``WireError("bad-signature")`` unless the account signed it."""
        value = self.to_value()
        verify_signature(signed_bytes("revocation", value), self.sig, self.account)
