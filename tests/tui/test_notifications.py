"""Desktop notifications: faked only at desktop-notifier's backend boundary (the class
the library would pick for this platform), against two real nodes."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from desktop_notifier import main as notifier_main
from desktop_notifier.backends.base import DesktopNotifierBackend
from desktop_notifier.common import Capability, Notification

from p2pchat.aio import TrioThread
from p2pchat.tui.notify import Desktop
from p2pchat.tui.screens.inbox import InboxScreen
from tests.integration.test_asyncio_client import TwoNodes
from tests.tui.conftest import app_for, client, until


class FakeCenter(DesktopNotifierBackend):
    """A notification service that records what it is asked to show."""

    shown: ClassVar[list[Notification]] = []

    async def request_authorisation(self) -> bool:
        return True

    async def has_authorisation(self) -> bool:
        return True

    async def _send(self, notification: Notification) -> None:
        FakeCenter.shown.append(notification)

    async def _clear(self, identifier: str) -> None:
        pass

    async def _clear_all(self) -> None:
        pass

    async def _get_capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.TITLE, Capability.MESSAGE})


@pytest.mark.integration
def test_a_dm_notifies_the_desktop_unless_muted(
    nodes: TrioThread[TwoNodes], monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeCenter.shown = []
    monkeypatch.setattr(notifier_main, "get_backend_class", lambda: FakeCenter)
    alice_home, bob_home = nodes.value.alice_home, nodes.value.bob_home
    alice_key = nodes.value.alice.account_key.hex()
    bob_key = nodes.value.bob.account_key.hex()
    with client(alice_home) as alice:
        alice.call("contacts.add", {"address": bob_key, "name": "Bob"})
    app = app_for(alice_home)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.connected, "the connection")
            assert app.desktop.available
            with client(bob_home) as bob:
                bob.call("dm.send", {"to": alice_key, "text": "<b>hi</b> \x1b[2J"})
            await until(pilot, lambda: FakeCenter.shown, "the notification")
            (shown,) = FakeCenter.shown
            assert shown.title == "Bob?"
            assert shown.message == "\u2039b\u203ahi\u2039/b\u203a \\x1b[2J"  # inert
            app.settings.toggle_mute(f"dm:{bob_key}")
            bells = app.bells
            with client(bob_home) as bob:
                bob.call("dm.send", {"to": alice_key, "text": "muted now"})
                bob.call("contacts.add", {"address": alice_key})
            inbox = app.screen
            assert isinstance(inbox, InboxScreen)
            await until(
                pilot,
                lambda: any(e.key == f"dm:{bob_key}" and e.unread == 2 for e in inbox.entries),
                "the second message",
            )
            assert app.bells == bells
            assert len(FakeCenter.shown) == 1

    asyncio.run(asyncio.wait_for(main(), 60))


def test_without_a_notification_service_nothing_happens(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The real library on this machine, with no D-Bus session: silent, no exception."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    desktop = Desktop()
    asyncio.run(desktop.show("Bob", "hello"))
    asyncio.run(desktop.show("Bob", "again"))
    assert capfd.readouterr() == ("", "")
    assert not Desktop(enabled=False).available


def test_a_failing_service_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(FakeCenter):
        async def send(self, notification: Notification) -> Any:
            raise OSError("the service went away")

    monkeypatch.setattr(notifier_main, "get_backend_class", lambda: Broken)
    desktop = Desktop()
    assert desktop.available
    asyncio.run(desktop.show("Bob", "hello"))
    assert not desktop.available
