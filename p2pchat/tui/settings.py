"""The chat client's own settings (muted conversations, desktop notifications on or off),
in ``<home>/chat.json``."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

__all__ = ["Settings"]

_FILE = "chat.json"


class Settings:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.muted: set[str] = set()
        self.desktop = True
        if path is not None and path.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                data = json.loads(path.read_text())
                self.muted = {m for m in data.get("muted", []) if isinstance(m, str)}
                self.desktop = data.get("desktop", True) is not False

    @classmethod
    def in_home(cls, home: Path) -> Settings:
        return cls(home / _FILE)

    def toggle_mute(self, key: str) -> bool:
        """Mute ``key`` (or unmute it); True if it is muted now."""
        self.muted ^= {key}
        self._save()
        return key in self.muted

    def set_desktop(self, on: bool) -> None:
        self.desktop = on
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"muted": sorted(self.muted), "desktop": self.desktop}, f)
        tmp.replace(self.path)
