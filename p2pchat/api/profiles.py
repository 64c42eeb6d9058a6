"""``profile.*``: our display name and "about" text, and the profiles people sent us."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from p2pchat.rpc import Bounds, NoParams, Registry

from .shapes import resolve_contact

if TYPE_CHECKING:
    from p2pchat.node import Node
    from p2pchat.node.profiles import Profile

__all__ = ["register_profile_methods", "profile_to_dict"]


@dataclass(frozen=True, slots=True)
class _SetParams:
    # Characters here; the node checks the real limits, in bytes (64 and 280).
    name: Annotated[str | None, Bounds(max_len=64)] = None
    about: Annotated[str | None, Bounds(max_len=280)] = None


@dataclass(frozen=True, slots=True)
class _ShowParams:
    account: Annotated[str | None, Bounds(max_len=128)] = None


def profile_to_dict(profile: Profile | None, account: bytes) -> dict[str, Any]:
    """PROFILE: ``name`` and ``about`` as the person wrote them (peer text: make it
    inert before printing); ``updated_at`` 0 and ``name`` None if none is known."""
    return {
        "account": account.hex(),
        "name": profile.name if profile is not None else None,
        "about": profile.about if profile is not None else "",
        "updated_at": profile.updated_at if profile is not None else 0,
    }


def register_profile_methods(registry: Registry, node: Node) -> None:
    async def profile_set(p: _SetParams) -> dict[str, Any]:
        """Set our name and/or about text; contacts and group members get it."""
        return profile_to_dict(await node.set_profile(name=p.name, about=p.about), node.account_key)

    async def profile_show(p: _ShowParams) -> dict[str, Any]:
        """Our profile, or the one a contact (or any account) sent us."""
        if p.account is None:
            return profile_to_dict(node.profile(), node.account_key)
        account = resolve_contact(p.account, await node.contacts())
        return profile_to_dict(node.profile(account), account)

    async def profile_list(_: object) -> list[dict[str, Any]]:
        """Every profile people sent us, newest first."""
        return [profile_to_dict(p, p.account) for p in node.profiles()]

    registry.add("profile.set", profile_set, scope="admin", params=_SetParams)
    registry.add("profile.show", profile_show, scope="read", params=_ShowParams)
    registry.add("profile.list", profile_list, scope="read", params=NoParams)
