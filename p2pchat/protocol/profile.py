"""Profiles: the display name and short "about" a person gives themselves (wire.md §7).

A profile travels as node-to-node content (``p2pchat/profile``) inside the pairwise
sessions to contacts and group members: authenticated like every DM (the sending
device's signature and certificate chain to its account), never shown as a message.
Receivers keep, per account, the profile with the highest ``ts``; it is a *claim*, shown
marked as one (``~Name``) and made inert before it reaches a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import Struct, Text, UInt, wire

__all__ = ["PROFILE_CONTENT_TYPE", "ProfileBody", "MAX_ABOUT_BYTES", "MAX_NAME_BYTES", "clean_name"]

PROFILE_CONTENT_TYPE = "p2pchat/profile"
MAX_NAME_BYTES = 64
MAX_ABOUT_BYTES = 280


@dataclass(frozen=True, kw_only=True)
class ProfileBody(Struct):
    """``p2pchat/profile``: who the sender says they are."""

    name: str = wire("name", Text(1, MAX_NAME_BYTES), "display name, as they call themselves")
    about: str | None = wire(
        "about", Text(0, MAX_ABOUT_BYTES), "a short text about them", optional=True
    )
    ts: int = wire("ts", UInt(), "when they set it, ms: the newest wins")


def clean_name(name: str) -> str:
    """A name on one line: runs of white space (newlines, tabs) become one space."""
    return " ".join(name.split())
