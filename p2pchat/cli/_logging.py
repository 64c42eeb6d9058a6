"""Log output of a running node: readable lines on stderr, py-libp2p kept quiet.

Configured deliberately rather than with ``basicConfig``: importing py-libp2p clears its
``libp2p`` logger's handlers and stops it propagating (so its warnings would reach
stderr through logging's bare "last resort" handler), and some of its modules log
through the root logger itself (``logging.warning(...)``), which installs a default
stderr handler if the root has none. So our one handler sits on the root logger,
``libp2p`` is made to propagate to it again (unless ``LIBP2P_DEBUG`` asks for
py-libp2p's own debug logging), and :func:`configure_logging` is called again once the
node has imported libp2p. Our loggers (``p2pchat.*``) log at INFO (DEBUG with
``-vv``), everything else at WARNING (INFO with ``-vv``), except py-libp2p, which reports
routine conditions (a peer that is offline, a DHT key it does not recognise as a peer
id) as ERROR and WARNING, partly through the root logger: without ``-v`` only our own
loggers reach the terminal; ``-v`` adds others' warnings, ``-vv`` their INFO. What
matters to a person is logged by our own code, one line per event
(:mod:`p2pchat.cli._narrate`), and every line is made inert (peers choose names).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Final

from ..text import terminal_safe

__all__ = ["LOG_FORMAT", "configure_logging"]

LOG_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_DATE_FORMAT: Final = "%H:%M:%S"
_QUIET: Final = ("libp2p", "multiaddr", "zeroconf", "aioquic", "asyncio")


class _InertFormatter(logging.Formatter):
    """Log lines made inert for the terminal: peers choose names, texts, reasons."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().format(record))


class _OursOnly(logging.Filter):
    """Without ``-v``, only our own loggers speak: py-libp2p logs routine conditions
    (dials, unreadable DHT streams) loudly, some of it through the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("p2pchat") or record.levelno >= logging.CRITICAL


def _is_default(handler: logging.Handler) -> bool:
    """The handler ``logging.basicConfig`` (or a first ``logging.warning(...)``) installs."""
    formatter = handler.formatter
    return (
        type(handler) is logging.StreamHandler
        and formatter is not None
        and formatter._fmt == logging.BASIC_FORMAT
    )


def configure_logging(verbose: int = 0) -> logging.Handler:
    """Install the node's stderr handler (idempotent); returns it."""
    ours = logging.DEBUG if verbose > 1 else logging.INFO
    others = logging.INFO if verbose > 1 else logging.WARNING
    root = logging.getLogger()
    handler = next(
        (h for h in root.handlers if getattr(h, "_p2pchat", False)), None
    ) or logging.StreamHandler(sys.stderr)
    handler.setFormatter(_InertFormatter(LOG_FORMAT, _DATE_FORMAT))
    for old in [f for f in handler.filters if isinstance(f, _OursOnly)]:
        handler.removeFilter(old)
    if verbose == 0:
        handler.addFilter(_OursOnly())
    handler._p2pchat = True  # type: ignore[attr-defined]
    for stray in [h for h in root.handlers if h is not handler and _is_default(h)]:
        root.removeHandler(stray)  # installed by a root-logger call before ours was there
    if handler not in root.handlers:
        root.addHandler(handler)
    root.setLevel(others)
    logging.getLogger("p2pchat").setLevel(ours)
    for name in _QUIET:
        logging.getLogger(name).setLevel(others)
    libp2p_level = {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.INFO)
    logging.getLogger("libp2p").setLevel(libp2p_level)
    if not os.environ.get("LIBP2P_DEBUG"):
        libp2p = logging.getLogger("libp2p")
        libp2p.handlers.clear()
        libp2p.propagate = True
    return handler
