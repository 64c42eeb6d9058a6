"""How node-talking commands reach the node: the same RPC client any app uses.

There is no back door: ``p2pchat contacts ...`` and friends call registered methods over
``<home>/rpc.sock`` with the admin token, exactly as a third-party app would. The client
(and with it trio) is imported only when a command actually calls the node, so the
network-free commands stay fast; neither imports libp2p.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from ..errors import ConfigError, NetworkError
from ._errors import NodeNotRunningError
from ._state import CliState

if TYPE_CHECKING:
    from ..client import SyncClient

__all__ = ["CLIENT_NAME", "CALL_TIMEOUT", "connected", "call"]

CLIENT_NAME: Final = "p2pchat-cli"
#: Seconds a command waits for one answer; a healthy node answers in milliseconds.
CALL_TIMEOUT: Final = 30.0
_SOCKET: Final = "rpc.sock"  # p2pchat.rpc.transport.SOCKET_FILE, without importing trio


@contextmanager
def connected(state: CliState) -> Iterator[SyncClient]:
    """A client connected to the node running in the home, closed on exit.

    Raises :class:`NodeNotRunningError` when nothing serves RPC there (no socket, a
    socket left by a crashed node, or a home without an RPC token).
    """
    home = state.home.path
    if not (home / _SOCKET).exists():
        raise NodeNotRunningError(home)
    from ..client import SyncClient

    try:
        client = SyncClient.connect(home=home, client_name=CLIENT_NAME, reconnect_timeout=2.0)
    except (NetworkError, ConfigError):
        raise NodeNotRunningError(home) from None
    with client:
        yield client


def call(state: CliState, method: str, params: dict[str, Any] | None = None) -> Any:
    """One call on a fresh connection (what most commands need)."""
    with connected(state) as client:
        return client.call(method, params, timeout=CALL_TIMEOUT)
