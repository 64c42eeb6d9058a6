"""Values every RPC client hands to apps (trio-free: the asyncio client shares them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pchat.errors import NetworkError

__all__ = ["ServerInfo", "Event", "Gap", "Page", "server_info"]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``rpc.hello`` told us: the chosen version, the node, our scopes, its limits."""

    version: int
    epoch: str
    node: dict[str, Any]
    scopes: frozenset[str]
    limits: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    """A result and, if the node cut it to fit one frame, the params for the rest: call the
    same method again with ``{**params, **next}`` (see ``call_page``)."""

    result: Any
    next: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One node event; ``data`` is the whole event map (``type`` included)."""

    cursor: int
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Gap:
    """Events after ``after_cursor`` were evicted (or the node restarted) before we resumed."""

    after_cursor: int | None
    oldest_cursor: int


def server_info(result: Any) -> ServerInfo:
    """Check and convert the result of ``rpc.hello``."""
    if not isinstance(result, dict):
        raise NetworkError("malformed rpc.hello result")
    keys = ("version", "epoch", "node", "scopes", "limits")
    version, epoch, node, scopes, limits = (result.get(k) for k in keys)
    if not (
        isinstance(version, int)
        and isinstance(epoch, str)
        and isinstance(node, dict)
        and isinstance(scopes, list)
        and all(isinstance(s, str) for s in scopes)
        and isinstance(limits, dict)
    ):
        raise NetworkError("malformed rpc.hello result")
    return ServerInfo(version, epoch, node, frozenset(scopes), limits)
