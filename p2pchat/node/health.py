"""Whether the node's home and store are still there: a home deleted (or replaced, or
made read-only) under a running node must stop it, loudly, before it acknowledges
messages that a restart would not find (issue 16 item 3).

SQLite keeps writing into a deleted file (the open descriptor keeps the inode alive), so
nothing fails by itself: the store checks its file before every commit
(:meth:`p2pchat.storage.sqlite.SqliteStore.check_file`, so no receipt follows a lost
write), and :func:`watch_home` polls the home so that an idle node stops too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import trio

from ..errors import StorageError

__all__ = ["HomeWatch", "watch_home"]

logger = logging.getLogger(__name__)


class HomeWatch:
    """The identity of a home directory as it was when the node started."""

    def __init__(self, home: Path) -> None:
        self.home = home
        st = os.stat(home)
        self._id = (st.st_dev, st.st_ino)

    def problem(self) -> str | None:
        """Why the home is no longer usable, or ``None``."""
        try:
            st = os.stat(self.home)
        except OSError:
            return f"the node's home {self.home} was deleted"
        if (st.st_dev, st.st_ino) != self._id:
            return f"the node's home {self.home} was replaced by another directory"
        if not os.access(self.home, os.W_OK):
            return f"the node's home {self.home} is no longer writable"
        return None


async def watch_home(
    watch: HomeWatch, interval_s: float, extra: Callable[[], None] | None = None
) -> None:
    """Return never; raise :class:`StorageError` (ending the node) once the home or
    ``extra`` (the store's own check, raising :class:`StorageError`) fails."""
    while True:
        await trio.sleep(interval_s)
        problem = watch.problem()
        if problem is None and extra is not None:
            try:
                extra()
            except StorageError as exc:
                problem = str(exc)
        if problem is not None:
            logger.critical(
                "%s: stopping the node now (messages are no longer acknowledged; "
                "restart it once its home is back)",
                problem,
            )
            raise StorageError(f"{problem}; the node stopped so that nothing is lost")
