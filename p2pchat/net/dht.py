"""Kademlia DHT (``libp2p.kad_dht``) behind :class:`p2pchat.net.base.Dht`.

Strict validation only: py-libp2p's default accepts and stores *any* namespace, so the
DHT is built with an empty, strict validator set and the node registers its own
namespaces (``validate`` + ``select``). Records under any other key are refused
locally and by the DHT's request handler when peers send them.

Lookups go through :func:`p2pchat.net.retry.retry` (per-attempt timeout, jittered
backoff): a py-libp2p server handles at most 12 inbound kad streams at once and resets
the rest, so a lookup under load can fail and succeed a moment later.

``get`` returns at most one record: py-libp2p's ``get_value`` selects the best record
among the peers it queried (with our ``select``) and returns only that one, and it
answers from the local store first when it holds the key. A server rejects a PUT
that its ``select`` ranks older than what it holds, so the newest record spreads.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from libp2p.abc import IHost
from libp2p.exceptions import BaseLibp2pError
from libp2p.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as Libp2pPeerInfo
from libp2p.records.utils import InvalidRecordType
from libp2p.records.validator import NamespacedValidator, Validator
from libp2p.tools.anyio_service import background_trio_service

from p2pchat.errors import LocalProtocolError, NetworkError

from ._errors import ErrorTable, map_exceptions
from ._memory_services import namespace_of
from .base import PeerInfo, RecordValidator
from .config import NetConfig, RetryConfig
from .retry import RetryCounters, retry

T = TypeVar("T")

__all__ = ["DhtStatistics", "Libp2pDht", "start_dht"]

logger = logging.getLogger(__name__)

_ADDR_TTL = 3600

DHT_ERRORS: ErrorTable = [
    (BaseLibp2pError, NetworkError),
    (OSError, NetworkError),
]


@dataclass(frozen=True, slots=True)
class DhtStatistics:
    attempts: int
    failed_attempts: int
    gave_up: int
    routing_table_size: int


class _ValidatorAdapter(Validator):
    """Our boolean validator in the shape py-libp2p calls (``validate`` raises)."""

    def __init__(self, validator: RecordValidator) -> None:
        self._validator = validator

    def validate(self, key: str, value: bytes) -> None:
        if not self._validator.validate(key, value):
            raise InvalidRecordType("record rejected by its namespace validator")

    def select(self, key: str, values: list[bytes]) -> int:
        return self._validator.select(key, values)


class Libp2pDht:
    """Satisfies :class:`p2pchat.net.base.Dht`."""

    def __init__(
        self,
        kad: KadDHT,
        host: IHost,
        *,
        policy: RetryConfig,
        jitter: random.Random,
        unreachable: Callable[[str], bool] = lambda peer_id: False,
    ) -> None:
        self._kad = kad
        self._host = host
        self._unreachable = unreachable
        self._policy = policy
        self._jitter = jitter
        self._validators: dict[str, RecordValidator] = {}
        self._counters = RetryCounters()

    def statistics(self) -> DhtStatistics:
        """Lookup attempts so far, how many failed, and how many gave up after retries."""
        c = self._counters
        return DhtStatistics(
            attempts=c.attempts,
            failed_attempts=c.failed_attempts,
            gave_up=c.gave_up,
            routing_table_size=self._kad.get_routing_table_size(),
        )

    async def _retry(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        return await retry(
            operation, policy=self._policy, jitter=self._jitter, what=what, counters=self._counters
        )

    @property
    def routing_table_size(self) -> int:
        return self._kad.get_routing_table_size()

    def register_namespace(self, namespace: str, validator: RecordValidator) -> None:
        if not namespace or "/" in namespace:
            raise LocalProtocolError("a namespace is one non-empty path segment")
        self._validators[namespace] = validator
        self._kad.register_validator(namespace, _ValidatorAdapter(validator))

    def _validator(self, key: str) -> RecordValidator:
        validator = self._validators.get(namespace_of(key))
        if validator is None:
            raise LocalProtocolError("no validator is registered for this DHT namespace")
        return validator

    async def add_peer(self, peer_id: str) -> None:
        """Put a connected peer in the routing table (py-libp2p has no ``bootstrap()``)."""
        with map_exceptions(DHT_ERRORS, what="routing table add"):
            await self._kad.add_peer(ID.from_base58(peer_id))

    async def refresh(self) -> None:
        async def once() -> None:
            with map_exceptions(DHT_ERRORS, what="routing table refresh"):
                await self._kad.refresh_routing_table()

        await self._retry(once, "refresh")

    async def put(self, key: str, value: bytes) -> None:
        validator = self._validator(key)
        if not validator.validate(key, value):
            raise LocalProtocolError("the record does not pass its namespace's validator")

        async def once() -> None:
            try:
                with map_exceptions(DHT_ERRORS, what="DHT put"):
                    await self._kad.put_value(key, value)
            except ValueError as exc:  # py-libp2p: "Refusing to replace newer value …"
                raise LocalProtocolError(
                    "refusing to replace a newer record with an older one"
                ) from exc

        await self._retry(once, "DHT put")

    async def get(self, key: str) -> list[bytes]:
        validator = self._validator(key)

        async def once() -> bytes | None:
            with map_exceptions(DHT_ERRORS, what="DHT get"):
                return await self._kad.get_value(key)

        value = await self._retry(once, "DHT get")
        if value is None or not validator.validate(key, value):
            return []
        return [value]

    async def provide(self, key: str) -> None:
        async def once() -> None:
            with map_exceptions(DHT_ERRORS, what="DHT provide"):
                if not await self._kad.provide(key):
                    raise NetworkError("no peer accepted the provider record")

        await self._retry(once, "DHT provide")

    async def find_providers(self, key: str) -> list[PeerInfo]:
        async def once() -> list[PeerInfo]:
            with map_exceptions(DHT_ERRORS, what="DHT find providers"):
                found = await self._kad.find_providers(key)
            return self._remember(found)

        return await self._retry(once, "find providers")

    async def find_peer(self, peer_id: str) -> PeerInfo | None:
        target = ID.from_base58(peer_id)

        async def once() -> PeerInfo | None:
            with map_exceptions(DHT_ERRORS, what="DHT find peer"):
                found = await self._kad.find_peer(target)
                if self._unreachable(peer_id) and target not in self._host.get_connected_peers():
                    # py-libp2p answers from its routing table or peerstore when it knows
                    # the peer, so a node that came back at a new address is looked for at
                    # the old one for ever. The addresses it knows failed: ask the network.
                    await self._kad.peer_routing.find_closest_peers_network(target.to_bytes())
                    fresh = self._host.get_peerstore().addrs(target)
                    known = list(found.addrs) if found is not None else []
                    found = Libp2pPeerInfo(target, [*fresh, *known])
            if found is None or not found.addrs:
                return None
            return self._remember([found])[0]

        return await self._retry(once, "find peer")

    def _remember(self, found: Sequence[object]) -> list[PeerInfo]:
        """Deduplicate (py-libp2p returns duplicates) and keep the addresses for dialing."""
        peerstore = self._host.get_peerstore()
        merged: dict[str, set[str]] = {}
        for info in found:
            peer: ID = info.peer_id  # type: ignore[attr-defined]
            addrs = list(info.addrs)  # type: ignore[attr-defined]
            if addrs and peer != self._host.get_id():
                peerstore.add_addrs(peer, addrs, _ADDR_TTL)
            merged.setdefault(peer.to_base58(), set()).update(str(a) for a in addrs)
        return [PeerInfo(peer, tuple(sorted(addrs))) for peer, addrs in sorted(merged.items())]


@asynccontextmanager
async def start_dht(
    host: IHost,
    config: NetConfig,
    *,
    jitter: random.Random,
    unreachable: Callable[[str], bool] = lambda peer_id: False,
) -> AsyncIterator[Libp2pDht]:
    """Run the DHT service for the duration of the block."""
    mode = DHTMode.SERVER if config.dht_mode == "server" else DHTMode.CLIENT
    kad = KadDHT(
        host,
        mode,
        validator=NamespacedValidator({}, strict_validation=True),
        validator_changed=True,
        strict_validation=True,
    )
    async with background_trio_service(kad):
        yield Libp2pDht(kad, host, policy=config.dht_retry, jitter=jitter, unreachable=unreachable)
