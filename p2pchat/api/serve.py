"""Serving a running node's API: the RPC server around the node, fed with its events.

The node never imports this module: whoever runs a node with an API (the CLI's
``node run``, :func:`p2pchat.aio.run_node_in_thread`, an embedding app, tests) enters
:func:`serve_node` (or :func:`open_api`, which follows ``config.rpc``) inside
``async with node``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import nacl.utils
import trio

from p2pchat.api.methods import Section, build_registry, node_info
from p2pchat.events import EventStream, event_to_dict
from p2pchat.rpc import RpcServer, ServerConfig, ensure_admin_token
from p2pchat.rpc import open_rpc_server as _open_rpc_server
from p2pchat_crypto.sealed import Rng

if TYPE_CHECKING:
    from p2pchat.node import Node

__all__ = ["serve_node", "open_api", "open_node_rpc", "forward_events"]


@asynccontextmanager
async def open_node_rpc(
    node: Node,
    *,
    home: Path,
    rng: Rng,
    config: ServerConfig | None = None,
    extra: Iterable[Section] = (),
) -> AsyncIterator[RpcServer]:
    """Serve ``node``'s API on ``<home>/rpc.sock`` (and TCP if configured) for the block.

    Creates the admin token on first use. Events are not forwarded here: see
    :func:`serve_node`, which does both.
    """
    ensure_admin_token(home, rng=rng)
    async with _open_rpc_server(
        home=home,
        registry=build_registry(node, extra=extra),
        node_info=node_info(node),
        rng=rng,
        config=config,
    ) as server:
        yield server


async def forward_events(
    events: EventStream,
    server: RpcServer,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Publish every node event on the RPC server until the node closes its event bus."""
    async with events:
        task_status.started()
        async for event in events:
            server.publish(event_to_dict(event))


@asynccontextmanager
async def serve_node(
    node: Node,
    *,
    rng: Rng = nacl.utils.random,
    config: ServerConfig | None = None,
    extra: Iterable[Section] = (),
) -> AsyncIterator[RpcServer]:
    """Serve a running ``node``'s API and publish its events on it, for the block.

    Enter it inside ``async with node``: the socket is ``<node.config.home>/rpc.sock``,
    plus loopback TCP on ``node.config.rpc_tcp_port`` unless ``config`` says otherwise.
    Leaving the block stops forwarding, then the server, before the node closes, so no
    RPC handler outlives the work it calls into. ``rng`` makes the admin token and the
    event epoch.
    """
    config = config or ServerConfig(tcp_port=node.config.rpc_tcp_port)
    async with (
        open_node_rpc(node, home=node.config.home, rng=rng, config=config, extra=extra) as server,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(forward_events, node.events(), server)
        yield server
        nursery.cancel_scope.cancel()


def open_api(
    node: Node, *, rng: Rng = nacl.utils.random
) -> AbstractAsyncContextManager[RpcServer | None]:
    """:func:`serve_node` if the node's config asks for its API (``config.rpc``, the
    default), else a block that serves nothing and yields ``None``."""
    if not node.config.rpc:
        return nullcontext(None)
    return serve_node(node, rng=rng)
