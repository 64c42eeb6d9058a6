"""p2pchat: a peer-to-peer, end-to-end encrypted messenger with an open wire protocol.

Embedding (see ``docs/embedding.md``)::

    import p2pchat

    async with p2pchat.Node(p2pchat.NodeConfig(home=path), identity) as node:
        await node.send_dm(account_key, "hello")
        async with node.events() as stream:
            async for event in stream:
                ...

The names below load on first use (PEP 562), so that ``import p2pchat`` (done by the
CLI and by RPC-only apps) pulls in neither trio nor py-libp2p.
"""

__version__ = "0.1.0"

# Not ``typing.TYPE_CHECKING``: importing typing is most of this package's start-up time,
# the window in which Ctrl-C on the CLI could still end in a traceback (type checkers
# honour any name TYPE_CHECKING).
TYPE_CHECKING = False
if TYPE_CHECKING:  # the explicit "as" re-exports them for type checkers
    from .config import DeliveryConfig as DeliveryConfig
    from .config import MailboxConfig as MailboxConfig
    from .config import NodeConfig as NodeConfig
    from .errors import P2PChatError as P2PChatError
    from .events import Event as Event
    from .events import EventStream as EventStream
    from .identity.keyfile import open_or_create as open_or_create
    from .identity.keystore import UnlockedIdentity as UnlockedIdentity
    from .net.config import NetConfig as NetConfig
    from .node import Node as Node
    from .protocol.content import Content as Content

_HOMES = {
    "P2PChatError": "errors",
    "Node": "node",
    "NodeConfig": "config",
    "NetConfig": "net.config",
    "DeliveryConfig": "config",
    "MailboxConfig": "config",
    "Event": "events",
    "EventStream": "events",
    "UnlockedIdentity": "identity.keystore",
    "open_or_create": "identity.keyfile",
    "Content": "protocol.content",
}

__all__ = ["__version__", *_HOMES]


def __getattr__(name: str) -> object:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'p2pchat' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"p2pchat.{module}"), name)
