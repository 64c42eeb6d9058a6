"""Optional desktop notifications, through ``desktop-notifier`` (the ``notify`` extra).

Without the library, without a notification service (no D-Bus session, a headless
server, SSH) or when the service refuses, nothing happens and nothing is printed: the
terminal bell still rings. What a peer wrote is made inert and cut short before it is
handed to the desktop (some notification servers read markup in the body).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .inert import inert

__all__ = ["Desktop"]

#: A notification service that does not answer within this many seconds is given up.
_TIMEOUT = 5.0


class Desktop:
    """Shows desktop notifications while it can; after a failure it stays quiet."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._notifier: Any = None
        if not enabled:
            return
        try:
            from desktop_notifier import DesktopNotifier
        except ImportError:  # the optional extra is not installed
            return
        # The library logs (with tracebacks) when there is no service; in a terminal UI
        # that would draw over the screen.
        quiet = logging.getLogger("desktop_notifier")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        try:
            self._notifier = DesktopNotifier(app_name="p2pchat")
        except Exception:  # noqa: BLE001 - whatever the platform raises: no notifications
            self._notifier = None

    @property
    def available(self) -> bool:
        return self._notifier is not None

    async def show(self, title: str, body: str) -> None:
        """One notification; never raises."""
        notifier = self._notifier
        if notifier is None:
            return
        title = inert(title, limit=64)
        body = inert(body, limit=200).replace("<", "\u2039").replace(">", "\u203a")
        try:
            await asyncio.wait_for(notifier.send(title=title, message=body), _TIMEOUT)
        except Exception:  # noqa: BLE001 - no service, or it broke: stop trying
            self._notifier = None
