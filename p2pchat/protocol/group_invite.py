"""Invite links: capability tokens that a ``member.join`` redeems.

The inviter draws a 32-byte secret, publishes only its hash in a ``member.invite`` log
event (role granted, expiry, use count, optionally the one account allowed to use it),
and hands the *token* out of band (a link, a QR code). Whoever holds the token syncs the
group from the listed peers and appends ``member.join {secret}``. Every node checks the
join in the total order (:mod:`.group_state`): the secret must hash to an invite that
sorts earlier, is unexpired at the join's ``ts``, has uses left, and whose inviter may
still invite. Because uses are counted in the total order, "one use" means the same
join on every node, even when two people redeem a link at the same time.

The token never goes into the log: the secret stays a bearer capability, and revealing
it in the join is harmless because the join is what uses it up.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from p2pchat.errors import WireError
from p2pchat_crypto.kdf import blake2b, constant_time_equal
from p2pchat_crypto.sealed import Rng

from .codec import Bytes, ListOf, Struct, Text, UInt, wire
from .group_events import MemberInvite
from .group_state import invite_hash

__all__ = ["INVITE_PREFIX", "MAX_TOKEN", "InviteToken", "new_invite"]

INVITE_PREFIX = "p2pchat-invite:"
#: Cap on the CBOR of a token (before base64).
MAX_TOKEN = 2048
_CHECK_PERSON = b"p2pchat-inv-ck"


def _checksum(token: InviteToken) -> bytes:
    return blake2b(
        dataclasses.replace(token, checksum=None).to_bytes(), size=4, person=_CHECK_PERSON
    )


@dataclass(frozen=True, kw_only=True)
class InviteToken(Struct):
    """What the inviter hands out: enough to find the group and redeem the invite."""

    CDDL_NAME: ClassVar[str] = "invite-token"
    group: bytes = wire("g", Bytes(32), "group id")
    secret: bytes = wire("s", Bytes(32), "the invite secret (its invite hash is inv)")
    inviter: bytes = wire("by", Bytes(32), "inviter account key")
    expires: int = wire("exp", UInt(), "expiry, ms since the epoch (as in the invite)")
    peers: tuple[str, ...] = wire("peers", ListOf(Text(1, 128), 0, 8), "peer ids to sync from")
    name: str | None = wire("name", Text(1, 64), "group name, for display", optional=True)
    checksum: bytes | None = wire(
        "ck",
        Bytes(4),
        "BLAKE2b-32 of the token without ck: a changed link is invalid",
        optional=True,
    )

    def __repr__(self) -> str:
        # The secret is a bearer capability: never in logs or tracebacks.
        return f"InviteToken(group={self.group.hex()[:16]}…, expires={self.expires})"

    def to_text(self) -> str:
        """``p2pchat-invite:`` followed by unpadded base64url of the token's CBOR (with
        its checksum, so that a link changed or cut on the way is refused at once)."""
        sealed = dataclasses.replace(self, checksum=_checksum(self))
        return INVITE_PREFIX + base64.urlsafe_b64encode(sealed.to_bytes()).rstrip(b"=").decode()

    @classmethod
    def from_text(cls, text: str) -> InviteToken:
        """Parse a token string strictly; raises :class:`WireError` (``"bad-token"``…)."""
        if not text.startswith(INVITE_PREFIX):
            raise WireError("bad-token", "not a p2pchat invite")
        payload = text[len(INVITE_PREFIX) :]
        if len(payload) > MAX_TOKEN * 2 or not payload.isascii():
            raise WireError("bad-token", "token too long or not ASCII")
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            raise WireError("bad-token", "not base64url") from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != payload:
            raise WireError("bad-token", "non-canonical base64url")
        token = cls.from_bytes(raw, max_size=MAX_TOKEN)
        if token.checksum is not None and not constant_time_equal(token.checksum, _checksum(token)):
            raise WireError("bad-token", "checksum mismatch: the link was changed or cut")
        return dataclasses.replace(token, checksum=None)  # checked: part of the link only


def new_invite(
    rng: Rng,
    *,
    group: bytes,
    inviter: bytes,
    role: str,
    expires: int,
    uses: int | None = None,
    account: bytes | None = None,
    peers: tuple[str, ...] = (),
    name: str | None = None,
) -> tuple[MemberInvite, InviteToken]:
    """A fresh invite: the log event body to author, and the token to hand out."""
    secret = rng(32)
    body = MemberInvite(
        invite=invite_hash(secret), role=role, expires=expires, account=account, uses=uses
    )
    body.check()
    token = InviteToken(
        group=group, secret=secret, inviter=inviter, expires=expires, peers=peers, name=name
    )
    return body, token
