"""The node's local RPC API: its methods and result shapes over :mod:`p2pchat.rpc`.

:mod:`.methods` (node, contact and DM methods; :func:`build_registry`), :mod:`.groups`
and :mod:`.group_shapes` (the group methods and their results). The node never imports
this package: whoever runs a node with an API serves it around the running node::

    async with Node(config, identity) as node, serve_node(node) as server:
        ...
"""

from .methods import build_registry
from .serve import open_api, serve_node

__all__ = ["build_registry", "open_api", "serve_node"]
