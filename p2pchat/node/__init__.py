"""The embedding API: ``async with Node(config, identity) as node``.

:mod:`.core` (:class:`Node`: lifecycle, events, statistics; its DM half in :mod:`.dms`) and
:mod:`.groups` (its group half, :class:`~p2pchat.node.groups.GroupsApi`). The node wires
the services (:mod:`p2pchat.identity`, :mod:`p2pchat.dm`, :mod:`p2pchat.groups`) to the
network and the store; it never imports its RPC layer (:mod:`p2pchat.api`).
"""

from .core import NetworkOpener, Node, parse_account, wall_clock_ms

__all__ = ["Node", "NetworkOpener", "parse_account", "wall_clock_ms"]
