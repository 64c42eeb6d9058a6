"""Membership, roles and moderation: a deterministic fold over the group's total order.

Why a fold over the total order: two admins who remove each other concurrently produce
two events neither of which saw the other. Every node eventually holds both, sorts them
by the same key ``(lt, event id)`` and replays the log from the start: the first removal
applies, and the second one's author is no longer a member at that point, so it is void.
Nodes that received the events in a different order (or got the earlier one late)
recompute and land on the same state: the state is a *function of the set of events*,
never of arrival order (``protocol-spec/groups.md`` §4).

Each permission is checked against the state *just before* the event in that order, with
the group rules of the genesis descriptor. A void event stays in the log (its chain must
stay contiguous) and is relayed, but changes nothing and is not shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from p2pchat_crypto.kdf import blake2b

from .group_events import (
    ROLES,
    DeviceRevoke,
    GroupDescriptor,
    GroupEvent,
    MemberAdd,
    MemberBan,
    MemberInvite,
    MemberJoin,
    MemberRemove,
    RoleChange,
)

__all__ = [
    "rank",
    "may_moderate",
    "may_change_role",
    "invite_hash",
    "Membership",
    "MembershipFold",
    "DEFAULT_INVITE_USES",
    "MEMBERSHIP_KINDS",
]

#: Joins an invite admits when its ``uses`` field is absent.
DEFAULT_INVITE_USES = 1
_RANK = {role: len(ROLES) - i for i, role in enumerate(ROLES)}  # owner 5 … viewer 1


def rank(role: str | None) -> int:
    """Numeric rank of a role: owner highest, 0 for a non-member."""
    return 0 if role is None else _RANK[role]


def may_moderate(role: str | None, target: str | None) -> bool:
    """Whether a member with ``role`` may remove or ban one with ``target`` role.

    Moderators act on lower roles; admins and owners also on their peers (so two admins
    *can* remove each other, and the total order decides who did it first). The fold
    applies exactly this rule; a node asks it before signing, so it never publishes a
    moderation event every member would ignore.
    """
    if role is None or rank(role) < rank("moderator"):
        return False
    return rank(target) < rank(role) or (rank(target) == rank(role) >= rank("admin"))


def may_change_role(
    author: bytes, role: str | None, account: bytes, target: str | None, new: str
) -> bool:
    """Whether ``author`` (with ``role``) may set the role of ``account`` (now ``target``)
    to ``new``: anyone may step down; owners set any role but cannot demote owners;
    admins change lower roles to lower roles."""
    if role is None or target is None or target == new:
        return False
    if account == author:
        return rank(new) < rank(role)
    if role == "owner":
        return target != "owner"
    return rank(role) >= rank("admin") and rank(target) < rank(role) and rank(new) < rank(role)


def invite_hash(secret: bytes) -> bytes:
    """The ``inv`` of a ``member.invite``: BLAKE2b-256 (personalised) of the secret."""
    return blake2b(secret, size=32, person=b"p2pchat-invite")


@dataclass(frozen=True, slots=True)
class Membership:
    """An immutable snapshot of who is in the group, with which role, at which epoch.

    ``epoch`` counts the membership departures (leave, remove, ban of a member) and the
    revocations of members' devices in the total order: each one requires fresh sender
    keys in private groups.
    """

    descriptor: GroupDescriptor
    members: MappingProxyType[bytes, str]
    banned: MappingProxyType[bytes, int | None]
    pending: frozenset[bytes]
    epoch: int

    def role_of(self, account: bytes) -> str | None:
        return self.members.get(account)

    def is_member(self, account: bytes) -> bool:
        return account in self.members

    @property
    def owners(self) -> frozenset[bytes]:
        return frozenset(a for a, r in self.members.items() if r == "owner")

    def count_by_role(self) -> dict[str, int]:
        counts = dict.fromkeys(ROLES, 0)
        for role in self.members.values():
            counts[role] += 1
        return counts


@dataclass(slots=True)
class _Invite:
    role: str
    expires: int
    account: bytes | None
    uses_left: int
    inviter: bytes


@dataclass(slots=True)
class MembershipFold:
    """The mutable state of one replay of the log. Feed events in total order."""

    descriptor: GroupDescriptor
    members: dict[bytes, str] = field(default_factory=dict)
    banned: dict[bytes, int | None] = field(default_factory=dict)
    pending: set[bytes] = field(default_factory=set)
    invites: dict[bytes, _Invite] = field(default_factory=dict)
    epoch: int = 0
    revoked: set[tuple[bytes, bytes]] = field(default_factory=set)

    @classmethod
    def start(cls, descriptor: GroupDescriptor, owner: bytes) -> MembershipFold:
        return cls(descriptor=descriptor, members={owner: "owner"})

    def clone(self) -> MembershipFold:
        """An independent copy (for fold checkpoints)."""
        return MembershipFold(
            descriptor=self.descriptor,
            members=dict(self.members),
            banned=dict(self.banned),
            pending=set(self.pending),
            invites={k: dataclasses.replace(v) for k, v in self.invites.items()},
            epoch=self.epoch,
            revoked=set(self.revoked),
        )

    def snapshot(self) -> Membership:
        return Membership(
            descriptor=self.descriptor,
            members=MappingProxyType(dict(self.members)),
            banned=MappingProxyType(dict(self.banned)),
            pending=frozenset(self.pending),
            epoch=self.epoch,
        )

    # --- helpers -------------------------------------------------------------------

    def role_of(self, account: bytes) -> str | None:
        return self.members.get(account)

    def _is_banned(self, account: bytes, ts: int) -> bool:
        if account not in self.banned:
            return False
        until = self.banned[account]
        return until is None or ts < until

    def _full(self) -> bool:
        cap = self.descriptor.rules.max_members
        return cap is not None and len(self.members) >= cap

    def _admit(self, account: bytes, role: str) -> None:
        self.members[account] = role
        self.pending.discard(account)

    def _depart(self, account: bytes) -> None:
        if self.members.pop(account, None) is not None:
            self.epoch += 1

    # --- the fold ------------------------------------------------------------------

    def apply(self, event: GroupEvent, body: Any) -> bool:
        """Apply one membership event (kind in :data:`MEMBERSHIP_KINDS`); return whether
        it had effect (``False``: void at this point of the order)."""
        author = event.author_account
        role = self.members.get(author)
        rules = self.descriptor.rules
        if event.kind == "member.join":
            assert isinstance(body, MemberJoin)
            return self._join(event, body)
        if role is None:
            return False
        if event.kind == "member.leave":
            self._depart(author)
            return True
        if isinstance(body, DeviceRevoke):
            # (the engine checked the revocation's signature) A member's device leaves:
            # the epoch moves on so that it cannot read what follows.
            key = (body.revocation.account, body.revocation.device)
            if key in self.revoked or key[0] not in self.members:
                return False
            self.revoked.add(key)
            self.epoch += 1
            return True
        if isinstance(body, MemberAdd):
            if rank(role) < rank(rules.invite) or rank(body.role) > rank(role):
                return False
            if body.account in self.members or self._is_banned(body.account, event.ts):
                return False
            if self._full():
                return False
            self._admit(body.account, body.role)
            return True
        if isinstance(body, MemberInvite):
            if rank(role) < rank(rules.invite) or rank(body.role) > rank(role):
                return False
            if body.invite in self.invites:
                return False  # the first invite with this hash wins
            uses = DEFAULT_INVITE_USES if body.uses is None else body.uses
            self.invites[body.invite] = _Invite(body.role, body.expires, body.account, uses, author)
            return True
        if isinstance(body, MemberRemove | MemberBan):
            if not self._may_moderate(role, self.members.get(body.account)):
                return False
            if isinstance(body, MemberBan):
                self.banned[body.account] = body.until
                self.pending.discard(body.account)
            elif body.account not in self.members:
                return False
            self._depart(body.account)
            return True
        if isinstance(body, RoleChange):
            return self._role_change(author, role, body)
        return False

    @staticmethod
    def _may_moderate(role: str, target: str | None) -> bool:
        return may_moderate(role, target)

    def _role_change(self, author: bytes, role: str, body: RoleChange) -> bool:
        target = self.members.get(body.account)
        allowed = may_change_role(author, role, body.account, target, body.role)
        if allowed:
            self.members[body.account] = body.role
        return allowed

    def _join(self, event: GroupEvent, body: MemberJoin) -> bool:
        author = event.author_account
        if author in self.members:
            return True  # a new device of a member announcing itself: no change
        if self._is_banned(author, event.ts) or self._full():
            return False
        rules = self.descriptor.rules
        if body.secret is None:
            if rules.join == "open":
                self._admit(author, "member")
                return True
            if rules.join == "approval":
                self.pending.add(author)
                return True
            return False
        invite = self.invites.get(invite_hash(body.secret))
        if (
            invite is None
            or invite.uses_left <= 0
            or event.ts >= invite.expires
            or (invite.account is not None and invite.account != author)
            or rank(self.members.get(invite.inviter)) < rank(rules.invite)
        ):
            return False
        invite.uses_left -= 1
        self._admit(author, invite.role)
        return True


MEMBERSHIP_KINDS = frozenset(
    {
        "member.add",
        "member.invite",
        "member.join",
        "member.leave",
        "member.remove",
        "member.ban",
        "role.change",
        "device.revoke",
    }
)
