"""Profiles (mixed into :class:`p2pchat.node.Node`): ours, and the ones people send us.

``set_profile`` keeps ours (sealed in the store) and sends it, as ``p2pchat/profile``
node-to-node content (``protocol/profile.py``), to our accepted contacts and to the
members of our active groups; a contact we accept later gets it too. A received profile
is kept if it is newer than the one we hold; a contact's name in it becomes the
contact's claimed name (shown ``~Name`` until we name them), which our DMs also carry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..events import ContactChanged, EventBus
from ..identity.local_keys import LocalKeys
from ..protocol.content import Content
from ..protocol.profile import (
    MAX_ABOUT_BYTES,
    MAX_NAME_BYTES,
    PROFILE_CONTENT_TYPE,
    ProfileBody,
    clean_name,
)
from ..storage.base import Store
from ..storage.records import Contact, ContactState, GroupInfo, GroupStatus

if TYPE_CHECKING:
    from ..config import NodeConfig
    from ..dm.service import DirectMessages
    from ..protocol.group_state import Membership

__all__ = ["Profile", "ProfilesApi", "MAX_PROFILES"]

_OURS_META = "profile"
_THEIRS_META = "profiles"
_KIND = "p2pchat/profiles"
#: At most this many received profiles are kept (the oldest go first).
MAX_PROFILES = 4096


@dataclass(frozen=True, slots=True)
class Profile:
    """A display name and an "about" text, as of ``updated_at`` (ms)."""

    account: bytes
    name: str
    about: str
    updated_at: int


def _body(profile: Profile) -> dict[str, Any]:
    return {"name": profile.name, "about": profile.about, "ts": profile.updated_at}


class ProfilesApi:
    """Set, send, receive and read profiles."""

    _clock: Callable[[], int]
    _config: NodeConfig
    _events: EventBus
    _keys: LocalKeys
    _profile: Profile | None
    _profiles: dict[bytes, Profile]

    @property
    def _s(self) -> Store:
        raise NotImplementedError

    @property
    def account_key(self) -> bytes:
        raise NotImplementedError

    if TYPE_CHECKING:  # provided by Node and the other mixins, which come later in the MRO

        @property
        def _dms(self) -> DirectMessages: ...

        async def contacts(self, *, state: ContactState | None = None) -> list[Contact]: ...

        async def groups(self) -> list[GroupInfo]: ...

        def group_state(self, group_id: bytes) -> Membership: ...

    @property
    def display_name(self) -> str | None:
        """The name we give ourselves: our profile's, else the configured one."""
        profile = self._profile
        return profile.name if profile is not None else self._config.display_name

    def _set_display_name(self, name: str) -> None:
        self._dms.set_display_name(name)

    async def _send_hidden(self, account: bytes, content: Content) -> None:
        await self._dms.send_hidden(account, content)

    async def _profile_recipients(self) -> set[bytes]:
        """Who gets our profile: accepted contacts and members of our active groups."""
        accounts = {c.account for c in await self.contacts(state=ContactState.ACCEPTED)}
        for group in await self.groups():
            if group.status is GroupStatus.ACTIVE:
                accounts |= set(self.group_state(group.group_id).members)
        accounts.discard(self.account_key)
        return accounts

    async def _load_profiles(self, store: Store) -> None:
        """At start: our profile and the received ones, from the store."""
        self._profile, self._profiles = None, {}
        ours = await store.get_meta(_OURS_META)
        if ours is not None:
            value = self._keys.open_blob(_KIND, ours)
            if isinstance(value, dict):
                self._profile = _profile_of(self.account_key, value)
        theirs = await store.get_meta(_THEIRS_META)
        if theirs is not None:
            value = self._keys.open_blob(_KIND, theirs)
            if isinstance(value, dict):
                for key, body in value.items():
                    if isinstance(key, str) and isinstance(body, dict):
                        found = _profile_of(bytes.fromhex(key), body)
                        if found is not None:
                            self._profiles[found.account] = found

    async def set_profile(self, *, name: str | None = None, about: str | None = None) -> Profile:
        """Change our name and/or about text and send the profile to contacts and group
        members (in the background, retried like messages)."""
        old = self._profile
        new_name = clean_name(name) if name is not None else (old.name if old else "")
        new_about = about.strip() if about is not None else (old.about if old else "")
        if not new_name:
            raise ConfigError("a profile needs a name (1 to 64 bytes)")
        if len(new_name.encode()) > MAX_NAME_BYTES:
            raise ConfigError(f"the name is too long: at most {MAX_NAME_BYTES} bytes of UTF-8")
        if len(new_about.encode()) > MAX_ABOUT_BYTES:
            raise ConfigError(f"the about text is too long: at most {MAX_ABOUT_BYTES} bytes")
        now = max(self._clock(), old.updated_at + 1 if old else 0)
        profile = Profile(self.account_key, new_name, new_about, now)
        await self._s.put_meta(_OURS_META, self._keys.seal_blob(_KIND, _body(profile)))
        self._profile = profile
        self._set_display_name(new_name)
        for account in sorted(await self._profile_recipients()):
            await self.send_profile(account)
        return profile

    async def send_profile(self, account: bytes) -> None:
        """Send our profile (if we have one) to ``account``."""
        profile = self._profile
        if profile is None or account == self.account_key:
            return
        body = ProfileBody(name=profile.name, about=profile.about or None, ts=profile.updated_at)
        await self._send_hidden(
            account, Content(type=PROFILE_CONTENT_TYPE, body=body.to_value(), text="")
        )

    def profile(self, account: bytes | None = None) -> Profile | None:
        """Our profile, or the latest one ``account`` sent us."""
        if account is None or account == self.account_key:
            return self._profile
        return self._profiles.get(account)

    def claimed_name_of(self, account: bytes) -> str | None:
        found = self._profiles.get(account)
        return found.name if found is not None else None

    def profiles(self) -> list[Profile]:
        """Every profile received, newest first."""
        return sorted(self._profiles.values(), key=lambda p: -p.updated_at)

    async def _on_profile(self, account: bytes, _device: bytes, content: Content) -> None:
        """A ``p2pchat/profile`` from ``account`` (authenticated by its session; any of
        its devices may send it)."""
        body = ProfileBody.from_value(dict(content.body), path="body")
        assert isinstance(body, ProfileBody)
        name = clean_name(body.name)
        held = self._profiles.get(account)
        if not name or (held is not None and held.updated_at >= body.ts):
            return  # empty after cleaning, or not newer than what we have
        self._profiles[account] = Profile(account, name, body.about or "", body.ts)
        if len(self._profiles) > MAX_PROFILES:
            oldest = min(self._profiles.values(), key=lambda p: p.updated_at)
            del self._profiles[oldest.account]
        sealed = self._keys.seal_blob(
            _KIND, {k.hex(): _body(p) for k, p in sorted(self._profiles.items())}
        )
        await self._s.put_meta(_THEIRS_META, sealed)
        contact = await self._s.get_contact(account)
        if contact is not None and contact.claimed_name != name:
            await self._s.put_contact(
                dataclasses.replace(contact, claimed_name=name, updated_at=self._clock())
            )
        state = contact.state.value if contact is not None else "none"
        self._events.publish(ContactChanged(account=account, state=state))


def _profile_of(account: bytes, value: dict[Any, Any]) -> Profile | None:
    name, about, ts = value.get("name"), value.get("about", ""), value.get("ts")
    if not isinstance(name, str) or not isinstance(about, str) or not isinstance(ts, int):
        return None
    return Profile(account, name, about, ts)
